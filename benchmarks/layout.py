"""Lines per product file, at two revisions in one run: count, largest, median, over 500.

    .venv/bin/python benchmarks/layout.py [--before d53a593] [--after HEAD|worktree]

Product files are the Python files of `models/`, `serving/`, `tasks/`, `flows/`, `infra/`,
`cli/` and the top-level modules (`settings.py`, `demo.py`, `cli.py` while it was one file);
tests and benchmarks are not product. Each revision is read from git (`git show REV:path`),
the working tree with `--after worktree`. A file over 500 lines is listed with whether its
docstring says why it is that long (the house rule: split by idea, or say why not).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("models/", "serving/", "tasks/", "flows/", "infra/", "cli/")
TOP_LEVEL = ("settings.py", "demo.py", "cli.py")
LIMIT = 500
RESULT = REPO / "benchmarks" / "results" / "layout.json"


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=REPO, check=True, capture_output=True,
                          text=True).stdout


def is_product(path: str) -> bool:
    return path.endswith(".py") and (path.startswith(PACKAGES) or path in TOP_LEVEL)


def files_at(revision: str) -> dict[str, str]:
    """Every product file's text at a revision ('worktree': the files on disk, tracked or not)."""
    if revision == "worktree":
        listed = git("ls-files", "--cached", "--others", "--exclude-standard").split()
        return {p: (REPO / p).read_text() for p in listed if is_product(p) and (REPO / p).exists()}
    listed = git("ls-tree", "-r", "--name-only", revision).split()
    return {p: git("show", f"{revision}:{p}") for p in listed if is_product(p)}


def says_why(text: str) -> bool:
    """Whether the module docstring explains its length ('over 500 lines' in its words)."""
    head = text.split('"""', 2)[1] if text.lstrip().startswith('"""') else ""
    return "500 lines" in head


def summary(revision: str) -> dict[str, object]:
    texts = files_at(revision)
    lines = {path: len(text.splitlines()) for path, text in texts.items()}
    over = {path: {"lines": n, "docstring_says_why": says_why(texts[path])}
            for path, n in sorted(lines.items(), key=lambda item: -item[1]) if n > LIMIT}
    return {"revision": revision if revision == "worktree" else git("rev-parse", "--short",
                                                                    revision).strip(),
            "files": len(lines), "largest": max(lines.values()),
            "median": statistics.median(lines.values()), "over_500": over}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default="d53a593",
                        help="default: the last commit before the files were split by idea")
    parser.add_argument("--after", default="HEAD")
    args = parser.parse_args()
    rows = {"before": summary(args.before), "after": summary(args.after)}
    for name, row in rows.items():
        print(f"{name:<6} {row['revision']:<9} {row['files']:>4} files, largest "
              f"{row['largest']:,}, median {row['median']}, {len(row['over_500'])} over "
              f"{LIMIT}")
        for path, over in row["over_500"].items():  # type: ignore[union-attr]
            why = "docstring says why" if over["docstring_says_why"] else "no reason given"
            print(f"         {path}: {over['lines']:,} ({why})")
    RESULT.parent.mkdir(exist_ok=True)
    RESULT.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
