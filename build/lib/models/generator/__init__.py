"""Goodbooks-shaped data from a planted taste model, so the true preferences are known.

Every reader u draws books without replacement with probability proportional to exp(s(u, b)),
where s(u, b) = pop_b + beta * taste_u . genre_b + quality_b. Books carry a sparse genre mix
(inherited from their author) and readers a sparse taste over the same genres. The
popularity term is calibrated so that the number of ratings per book follows the skewed
curve of the real dataset by popularity rank (book_id 1 the most popular). The first draws
of a reader are their ratings (in a random time order), the next ones their to-read shelf.
Ratings grow with the affinity and follow each book's rating mix.

Sampling uses the Gumbel-top-k trick: the k largest of s(u, b) + Gumbel noise are a draw of
k books without replacement with those weights, computed for a block of readers over the
whole catalogue at once. Every block has its own random stream, so the output does not
depend on how many threads ran it.
"""

from models.generator.calibration import book_count_targets
from models.generator.constants import (
    GENERATOR_VERSION,
    GENRES,
    MANIFEST_FILE,
    N_TAGS,
    TRUTH_FILE,
    Progress,
)
from models.generator.continuation import (
    CONTINUATION_FILE,
    DRIFT_KINDS,
    Continuation,
    DriftKind,
    generate_continuation,
)
from models.generator.dataset import GeneratedDataset, generate_goodbooks
from models.generator.truth import PlantedTruth, load_truth, oracle_top_k

__all__ = [
    "CONTINUATION_FILE",
    "DRIFT_KINDS",
    "GENERATOR_VERSION",
    "GENRES",
    "MANIFEST_FILE",
    "N_TAGS",
    "TRUTH_FILE",
    "Continuation",
    "DriftKind",
    "GeneratedDataset",
    "PlantedTruth",
    "Progress",
    "book_count_targets",
    "generate_continuation",
    "generate_goodbooks",
    "load_truth",
    "oracle_top_k",
]
