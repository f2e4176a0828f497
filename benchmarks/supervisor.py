"""Hand-written process supervision (``infra.stack.processes``) against supervisord and honcho.

    .venv/bin/pip install supervisor honcho   # for this script only, not the project
    .venv/bin/python benchmarks/supervisor.py [--repeats 5] [--real-repeats 3]

``make up`` must start the services in the background and return to the shell; ``make down``
must stop every process of them, including a Prefect worker that ignores SIGTERM, and never a
process that merely reuses a recorded pid. This script measures those properties for

- **hand-written**: ``infra.stack.processes.start`` (one session per service, a pid file
  checked against the kernel's start time) and ``infra.stack.commands.down`` (SIGINT, SIGTERM,
  SIGKILL to the process group, in dependency order), each run as its own command;
- **supervisord** (the ``supervisor`` package) configured for the stack: ``stopsignal=INT``,
  ``stopasgroup``/``killasgroup``, 8 s ``stopwaitsecs``, start/stop order by priority;
  ``up`` is ``supervisord -c FILE`` (it daemonises), ``down`` is ``supervisorctl shutdown``
  until the daemon has exited;
- **supervisord with its defaults** (SIGTERM to the main process only, 10 s, then SIGKILL
  to the main process only): what a configuration without those three lines does;
- **honcho** (a Procfile runner): run in the background by the script, stopped with SIGTERM.

Stand-in services (cheap enough to repeat): ``api`` is ``python -m http.server``; ``mlflow``
and ``prefect-server`` are a parent whose child serves the port (as ``mlflow server`` and
``prefect server start`` run uvicorn as a child); ``worker`` ignores SIGTERM, stops on SIGINT
and has a child (a flow run). Every process carries a marker in its environment; a process
still carrying it after ``down`` has returned is a survivor (an orphan). Measured per
supervisor, ``--repeats`` times, the supervisors taking turns (medians): start to every port
answering, ``down`` until it returns, survivors; once each: a stale pid file naming a live
unrelated process (does ``down`` kill it? does ``up`` start the service?), a supervisor daemon
killed with SIGKILL before ``down``, a service killed with SIGKILL (is it restarted?),
resident memory of what stays running, and the extra dependency and configuration.

With ``--real-repeats N`` (default 3) the four real services of the stack (Prefect server,
MLflow server, API, worker; no deployments) are also started N times by ``python -m
infra.stack up --no-deploy`` / ``down`` and N times under supervisord from the same commands,
environment and health checks, taking turns. Results go to benchmarks/results/supervisor.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "supervisor.json"
BIN = Path(sys.executable).parent
MARKER = "GB_SUPERVISOR_BENCH"
NAMES = ("prefect-server", "mlflow", "api", "worker")  # start order
KINDS = {"prefect-server": "parent", "mlflow": "parent", "api": "serve", "worker": "stubborn"}
HEALTH_TIMEOUT_S = 60.0
DECISION = ("keep the hand-written supervision: faster to start and stop, nothing left "
            "behind, no daemon to lose, no dependency; supervisord only adds restarting a "
            "crashed service (benchmarks/README.md, 'Operations: process supervision')")


# --- the stand-in services ------------------------------------------------------------------
def stand_in(kind: str, port: int, directory: str) -> None:
    """Run one stand-in service in the foreground (``supervisor.py stand-in KIND PORT DIR``)."""
    serve = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
             "--directory", directory]
    if kind == "serve":
        os.execv(sys.executable, serve)
    if kind == "parent":
        # Default signal handling: SIGTERM ends the parent; the child ends only if signalled.
        child = subprocess.Popen(serve, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        child.wait()
        return
    # stubborn: the worker's known behaviour, SIGTERM ignored, SIGINT stops it.
    import http.server
    import threading

    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    flow_run = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"],
                                preexec_fn=lambda: signal.signal(signal.SIGTERM, signal.SIG_IGN))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port),
                                             http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        flow_run.wait()
    except KeyboardInterrupt:
        pass


def stand_in_command(name: str, port: int, root: Path) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "stand-in", KINDS[name], str(port),
            str(root)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1.0, trust_env=False).status_code == 200
    except httpx.HTTPError:
        return False


def wait_until(check: object, timeout_s: float = HEALTH_TIMEOUT_S) -> float:
    """Seconds until ``check()`` is true; raises on timeout."""
    began = time.monotonic()
    while time.monotonic() - began < timeout_s:
        if check():  # type: ignore[operator]
            return time.monotonic() - began
        time.sleep(0.05)
    raise TimeoutError(f"not true after {timeout_s:.0f} s: {check}")


def marked(marker: str) -> list[int]:
    """Running (not zombie) processes whose environment carries ``MARKER=marker``."""
    needle = f"{MARKER}={marker}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state != "Z":
            found.append(int(entry.name))
    return found


def kill_marked(marker: str) -> None:
    for pid in marked(marker):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def process_state(pid: int) -> str | None:
    """The kernel's state letter of ``pid`` (Z: exited, not reaped), or None when gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def rss_kib(pid: int | None) -> int:
    if not pid:
        return 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def decoy() -> subprocess.Popen:
    """An unrelated live process (its pid stands for a reused pid)."""
    return subprocess.Popen(["sleep", "300"], start_new_session=True)


# --- contenders ---------------------------------------------------------------------------
class Contender:
    """One way of running the four services: ``up`` returns, ``down`` stops everything."""

    name = ""

    def __init__(self, root: Path, marker: str) -> None:
        self.root, self.marker = root, marker
        self.ports = {name: free_port() for name in NAMES}
        self.env = {**os.environ, MARKER: marker, "PYTHONPATH": str(REPO)}

    def urls(self) -> list[str]:
        return [f"http://127.0.0.1:{p}/" for p in self.ports.values()]

    def up(self) -> None:
        raise NotImplementedError

    def down(self) -> None:
        raise NotImplementedError

    def daemon_pid(self) -> int | None:
        """The resident supervising process, if there is one."""
        return None

    def service_pid(self, name: str) -> int:
        raise NotImplementedError


class HandWritten(Contender):
    name = "hand-written"

    def run(self, command: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(Path(__file__).resolve()), "hand", command,
                               str(self.root), json.dumps(self.ports)], env=self.env,
                              capture_output=True, text=True, timeout=120, check=True)

    def up(self) -> None:
        self.run("up")

    def down(self) -> None:
        self.run("down")

    def service_pid(self, name: str) -> int:
        record = json.loads((self.root / "state" / "stack" / f"{name}.json").read_text())
        return int(record["pid"])


def hand(command: str, root: Path, ports: dict[str, int]) -> None:
    """``supervisor.py hand up|down ROOT PORTS``: the stack's own start and down."""
    from infra.stack.commands import down
    from infra.stack.processes import is_alive, load_record, start
    from infra.stack.services import Service, stack_dir
    from settings import Settings

    settings = Settings(_env_file=None, state_dir=root / "state", data_dir=root / "data")
    if command == "down":
        down(settings, echo=lambda _: None)
        return
    stack_dir(settings).mkdir(parents=True, exist_ok=True)
    for name in NAMES:
        record = load_record(settings, name)
        if record is not None and is_alive(record):
            continue
        port = ports[name]
        start(settings, Service(name, stand_in_command(name, port, root), port,
                                f"http://127.0.0.1:{port}/", ""), dict(os.environ))


class Supervisord(Contender):
    name = "supervisord"
    program_options = "stopsignal=INT\nstopwaitsecs=8\nstopasgroup=true\nkillasgroup=true\n"

    def __init__(self, root: Path, marker: str,
                 programs: dict[str, tuple[list[str], str]] | None = None) -> None:
        """``programs``: name -> (command, extra program lines); the stand-ins by default."""
        super().__init__(root, marker)
        self.conf = root / "supervisord.conf"
        self.pidfile = root / "supervisord.pid"
        self.programs = programs or {
            n: (stand_in_command(n, self.ports[n], root), "") for n in NAMES}
        self.conf.write_text(self.config())

    def config(self) -> str:
        sock = self.root / "supervisor.sock"
        text = (f"[unix_http_server]\nfile={sock}\n\n"
                f"[supervisord]\npidfile={self.pidfile}\nlogfile={self.root / 'supervisord.log'}"
                f"\nchildlogdir={self.root}\n\n"
                "[rpcinterface:supervisor]\nsupervisor.rpcinterface_factory = "
                "supervisor.rpcinterface:make_main_rpcinterface\n\n"
                f"[supervisorctl]\nserverurl=unix://{sock}\n")
        for priority, (name, (command, extra)) in enumerate(self.programs.items(), 1):
            text += (f"\n[program:{name}]\ncommand={shlex.join(command).replace('%', '%%')}\n"
                     f"directory={REPO}\npriority={priority}\nredirect_stderr=true\n"
                     f"stdout_logfile={self.root / (name + '.log')}\n{self.program_options}"
                     f"{extra}")
        return text

    def ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run([str(BIN / "supervisorctl"), "-c", str(self.conf), *args],
                              env=self.env, capture_output=True, text=True, timeout=120,
                              check=check)

    def up(self) -> None:
        subprocess.run([str(BIN / "supervisord"), "-c", str(self.conf)], env=self.env,
                       capture_output=True, timeout=60, check=True)

    def down(self) -> None:
        # The daemon's pid as the daemon itself reports it (its pid file may be stale).
        pid = self.daemon_pid()
        if pid is None:
            return  # nothing answers on the socket: nothing supervisord could stop
        self.ctl("shutdown", check=False)
        # shutdown returns at once; the daemon stops the programs, then exits.
        wait_until(lambda: process_state(pid) in (None, "Z"), 120)

    def daemon_pid(self) -> int | None:
        found = self.ctl("pid", check=False)
        return int(found.stdout) if found.returncode == 0 and found.stdout.strip().isdigit() \
            else None

    def service_pid(self, name: str) -> int:
        return int(self.ctl("pid", name).stdout.strip())


class SupervisordDefaults(Supervisord):
    name = "supervisord (defaults)"
    program_options = ""


class Honcho(Contender):
    name = "honcho"

    def __init__(self, root: Path, marker: str) -> None:
        super().__init__(root, marker)
        self.procfile = root / "Procfile"
        self.procfile.write_text("".join(
            f"{n}: {shlex.join(stand_in_command(n, self.ports[n], root))}\n" for n in NAMES))
        self.process: subprocess.Popen | None = None

    def up(self) -> None:
        log = open(self.root / "honcho.log", "ab")  # noqa: SIM115 - closed in down
        self.process = subprocess.Popen([str(BIN / "honcho"), "start", "-f", str(self.procfile),
                                         "-d", str(REPO)], env=self.env, stdout=log,
                                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        start_new_session=True)
        self.log = log

    def down(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=120)
        self.log.close()

    def daemon_pid(self) -> int | None:
        return self.process.pid if self.process and self.process.poll() is None else None


CONTENDERS = (HandWritten, Supervisord, SupervisordDefaults, Honcho)


# --- measurements -------------------------------------------------------------------------
def cycle(kind: type[Contender], root: Path) -> dict[str, object]:
    """One up, healthy, down; survivors afterwards."""
    marker = uuid.uuid4().hex
    contender = kind(root, marker)
    began = time.monotonic()
    contender.up()
    returned = time.monotonic() - began
    for url in contender.urls():
        wait_until(lambda url=url: answers(url))
    healthy_s = time.monotonic() - began
    launcher_still_running = isinstance(contender, Honcho) and contender.daemon_pid() is not None
    daemon = contender.daemon_pid()
    processes = len(marked(marker))
    rss = rss_kib(daemon)
    began = time.monotonic()
    contender.down()
    down_s = time.monotonic() - began
    time.sleep(0.2)  # let the kernel finish delivering the last signals
    survivors = marked(marker)
    kill_marked(marker)
    return {"up_returned_s": round(returned, 3), "healthy_s": round(healthy_s, 3),
            "down_s": round(down_s, 3), "processes_while_up": processes,
            "survivors": len(survivors), "daemon_rss_kib": rss,
            "up_blocks_in_foreground": launcher_still_running}


def stale_pid(kind: type[Contender], root: Path) -> dict[str, object] | None:
    """A pid file naming a live unrelated process: is it killed by down? does up start?"""
    marker = uuid.uuid4().hex
    contender = kind(root, marker)
    other = decoy()
    try:
        if isinstance(contender, HandWritten):
            state = root / "state" / "stack"
            state.mkdir(parents=True)
            # The api's pid file names the decoy, with another start time: a reused pid.
            (state / "api.json").write_text(json.dumps({
                "name": "api", "pid": other.pid, "identity": "1", "port": contender.ports["api"],
                "url": None, "log": str(root / "api.log"), "command": ["x"], "started_at": 0.0}))
        elif isinstance(contender, Supervisord):
            contender.pidfile.write_text(f"{other.pid}\n")
            stale = socket.socket(socket.AF_UNIX)  # a socket file nobody listens on any more
            stale.bind(str(root / "supervisor.sock"))
            stale.close()
        else:
            return None  # honcho keeps no pid file: there is nothing to go stale
        contender.down()
        decoy_killed_by_down = other.poll() is not None
        contender.up()
        for url in contender.urls():
            wait_until(lambda url=url: answers(url))
        started = all(answers(u) for u in contender.urls())
        contender.down()
        decoy_killed = other.poll() is not None
        return {"decoy_killed_by_down": decoy_killed_by_down, "up_started_service": started,
                "decoy_killed_at_all": decoy_killed, "survivors": len(marked(marker))}
    finally:
        kill_marked(marker)
        other.kill()
        other.wait()


def daemon_killed(kind: type[Contender], root: Path) -> dict[str, object] | None:
    """The supervising process dies (SIGKILL, the OOM killer) before ``down``."""
    marker = uuid.uuid4().hex
    contender = kind(root, marker)
    contender.up()
    try:
        for url in contender.urls():
            wait_until(lambda url=url: answers(url))
        daemon = contender.daemon_pid()
        if daemon is None:
            return None
        os.kill(daemon, signal.SIGKILL)
        time.sleep(0.5)
        with contextlib.suppress(subprocess.CalledProcessError, TimeoutError):
            contender.down()
        time.sleep(0.2)
        return {"survivors_after_down": len(marked(marker))}
    finally:
        kill_marked(marker)


def service_killed(kind: type[Contender], root: Path) -> dict[str, object] | None:
    """The API process is killed with SIGKILL: does it answer again within 10 s?"""
    if kind is Honcho:
        return None  # honcho stops every process when one exits
    marker = uuid.uuid4().hex
    contender = kind(root, marker)
    contender.up()
    try:
        url = f"http://127.0.0.1:{contender.ports['api']}/"
        for u in contender.urls():
            wait_until(lambda u=u: answers(u))
        os.kill(contender.service_pid("api"), signal.SIGKILL)
        wait_until(lambda: not answers(url), 10)
        try:
            back_s: float | None = round(wait_until(lambda: answers(url), 10), 2)
        except TimeoutError:
            back_s = None
        contender.down()
        return {"restarted_after_s": back_s}
    finally:
        kill_marked(marker)


def median(rows: list[dict[str, object]], key: str) -> float:
    return round(statistics.median(float(r[key]) for r in rows), 3)  # type: ignore[arg-type]


def stand_ins(repeats: int) -> dict[str, dict[str, object]]:
    # Repeats take turns between the supervisors, so a change of load hits all alike.
    rows: dict[str, list[dict[str, object]]] = {kind.name: [] for kind in CONTENDERS}
    for _ in range(repeats):
        for kind in CONTENDERS:
            root = Path(tempfile.mkdtemp(prefix="gb-sup-"))
            try:
                rows[kind.name].append(cycle(kind, root))
            finally:
                shutil.rmtree(root, ignore_errors=True)
    results: dict[str, dict[str, object]] = {}
    for kind in CONTENDERS:
        runs = rows[kind.name]
        found: dict[str, object] = {"runs": runs}
        for key in ("up_returned_s", "healthy_s", "down_s", "survivors", "daemon_rss_kib"):
            found[f"median_{key}"] = median(runs, key)
        found["up_blocks_in_foreground"] = any(r["up_blocks_in_foreground"] for r in runs)
        for scenario in (stale_pid, daemon_killed, service_killed):
            root = Path(tempfile.mkdtemp(prefix="gb-sup-"))
            try:
                found[scenario.__name__] = scenario(kind, root)
            finally:
                shutil.rmtree(root, ignore_errors=True)
        results[kind.name] = found
        print(f"{kind.name:<24} healthy {found['median_healthy_s']:.2f} s  down "
              f"{found['median_down_s']:.2f} s  survivors {found['median_survivors']:g}  "
              f"stale {found['stale_pid']}  daemon killed {found['daemon_killed']}  "
              f"service killed {found['service_killed']}", flush=True)
    return results


# --- the real services --------------------------------------------------------------------
def real_env(root: Path, marker: str) -> dict[str, str]:
    sys.path.insert(0, str(REPO / "benchmarks"))
    from stack_up import scratch_env

    env = scratch_env(root)
    env.update({MARKER: marker, "PYTHONPATH": str(REPO),
                "REDIS_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/12")})
    return env


@contextlib.contextmanager
def environ(env: dict[str, str]):  # noqa: ANN201 - a context manager
    """``os.environ`` is ``env`` inside the block (the stack's functions read the settings and
    copy the environment from it)."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def real_healthy(settings, worker_name: str) -> bool:  # noqa: ANN001 - settings.Settings
    from infra.stack.health import worker_online
    from infra.stack.services import endpoints

    ep = endpoints(settings)
    return (answers(f"{ep.prefect_api}/health") and answers(f"{ep.mlflow}/health")
            and answers(f"{ep.api}/health") and worker_online(settings, worker_name))


def real_hand(root: Path) -> dict[str, object]:
    """``python -m infra.stack up --no-deploy`` (it returns once every service answers), down."""
    marker = uuid.uuid4().hex
    env = real_env(root, marker)
    command = [sys.executable, "-m", "infra.stack"]
    began = time.monotonic()
    subprocess.run([*command, "up", "--no-deploy"], cwd=REPO, env=env, capture_output=True,
                   timeout=600, check=True)
    healthy_s = time.monotonic() - began
    processes = len(marked(marker))
    began = time.monotonic()
    subprocess.run([*command, "down"], cwd=REPO, env=env, capture_output=True, timeout=300,
                   check=True)
    down_s = time.monotonic() - began
    time.sleep(0.2)
    survivors = marked(marker)
    kill_marked(marker)
    return {"healthy_s": round(healthy_s, 2), "down_s": round(down_s, 2),
            "processes_while_up": processes, "survivors": len(survivors), "daemon_rss_kib": 0}


def real_supervisord(root: Path) -> dict[str, object]:
    """The same four services, commands and environment under supervisord; ``up`` as a short
    script: supervisord, wait for Prefect, create the work pool, start the worker, wait for all.
    """
    from infra.stack.deployments import ensure_work_pool
    from infra.stack.services import endpoints, services, stack_environment
    from settings import Settings

    marker = uuid.uuid4().hex
    env = real_env(root, marker)
    worker_name = f"goodbooks-bench-{marker[:8]}"
    with environ(env):
        settings = Settings(_env_file=None)
        planned = services(settings, worker_name)
        stack_env = {**stack_environment(settings), MARKER: marker}
    programs = {}
    for name in NAMES:
        service = planned[name]
        extra = "autostart=false\n" if name == "worker" else ""  # started once the pool exists
        if service.env:  # the service's own variables on top of the stack's
            pairs = ",".join(f'{k}="{v}"' for k, v in service.env.items())
            extra += f"environment={pairs.replace('%', '%%')}\n"
        programs[name] = (service.command, extra)
    (root / "state").mkdir(parents=True, exist_ok=True)
    sup = Supervisord(root, marker, programs)
    sup.env = stack_env
    began = time.monotonic()
    sup.up()
    wait_until(lambda: answers(f"{endpoints(settings).prefect_api}/health"), 300)
    with environ(env):
        ensure_work_pool(settings)
    sup.ctl("start", "worker")
    wait_until(lambda: real_healthy(settings, worker_name), 300)
    healthy_s = time.monotonic() - began
    processes = len(marked(marker))
    rss = rss_kib(sup.daemon_pid())
    began = time.monotonic()
    sup.down()
    down_s = time.monotonic() - began
    time.sleep(0.2)
    survivors = marked(marker)
    kill_marked(marker)
    return {"healthy_s": round(healthy_s, 2), "down_s": round(down_s, 2),
            "processes_while_up": processes, "survivors": len(survivors),
            "daemon_rss_kib": rss}


def real(repeats: int) -> dict[str, dict[str, object]]:
    runs = {"hand-written": real_hand, "supervisord": real_supervisord}
    rows: dict[str, list[dict[str, object]]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():  # taking turns, like the stand-ins
            root = Path(tempfile.mkdtemp(prefix="gb-sup-real-"))
            try:
                rows[name].append(run(root))
                print(f"real {name:<14} {rows[name][-1]}", flush=True)
            finally:
                shutil.rmtree(root, ignore_errors=True)
    return {name: {"runs": found, **{f"median_{k}": median(found, k) for k in (
        "healthy_s", "down_s", "survivors", "processes_while_up", "daemon_rss_kib")}}
        for name, found in rows.items()}


def costs() -> dict[str, object]:
    import importlib.metadata as md

    site = Path(md.distribution("supervisor").locate_file("supervisor"))
    honcho = Path(md.distribution("honcho").locate_file("honcho"))

    def size_kib(path: Path) -> int:
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) // 1024

    sample = Supervisord(Path(tempfile.mkdtemp(prefix="gb-sup-")), "x")
    lines = len([ln for ln in sample.config().splitlines() if ln.strip()])
    shutil.rmtree(sample.root, ignore_errors=True)
    processes = REPO / "infra" / "stack" / "processes.py"
    honcho_help = subprocess.run([str(BIN / "honcho"), "start", "--help"], capture_output=True,
                                 text=True, check=True).stdout
    return {
        "honcho_start_has_a_daemon_option": "daemon" in honcho_help.lower()
        or "background" in honcho_help.lower(),
        "supervisor_version": md.version("supervisor"),
        "supervisor_requires": md.requires("supervisor") or [],
        "supervisor_installed_kib": size_kib(site),
        "honcho_version": md.version("honcho"),
        "honcho_installed_kib": size_kib(honcho),
        "supervisord_config_lines": lines,
        "hand_written_lines": len(processes.read_text().splitlines()),
    }


def ratios(results: dict[str, dict[str, object]], keys: tuple[str, ...]) -> dict[str, object]:
    base = results["hand-written"]
    return {name: {k: round(float(r[k]) / float(base[k]), 2) if float(base[k]) else None  # type: ignore[arg-type]
                   for k in keys} for name, r in results.items()}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "stand-in":
        stand_in(sys.argv[2], int(sys.argv[3]), sys.argv[4])
        return
    if len(sys.argv) > 1 and sys.argv[1] == "hand":
        hand(sys.argv[2], Path(sys.argv[3]), json.loads(sys.argv[4]))
        return
    missing = [n for n in ("supervisord", "supervisorctl", "honcho") if not (BIN / n).exists()]
    if missing:
        raise SystemExit(f"{', '.join(missing)} not in {BIN}: "
                         f"{BIN / 'pip'} install supervisor honcho")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--real-repeats", type=int, default=3)
    args = parser.parse_args()
    load = os.getloadavg()[0]
    found = stand_ins(args.repeats)
    summary: dict[str, object] = {
        "decision": DECISION, "cpus": os.cpu_count(), "load_avg_1m_before": round(load, 2),
        "repeats": args.repeats, "stand_ins": found,
        "stand_in_ratios": ratios(found, ("median_healthy_s", "median_down_s")),
        "costs": costs(),
    }
    if args.real_repeats:
        found_real = real(args.real_repeats)
        summary["real"] = found_real
        summary["real_ratios"] = ratios(found_real, ("median_healthy_s", "median_down_s"))
    summary["load_avg_1m_after"] = round(os.getloadavg()[0], 2)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps({k: summary[k] for k in summary if "ratios" in k or k == "costs"}, indent=2))
    print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
