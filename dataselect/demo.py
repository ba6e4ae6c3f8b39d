"""A seeded synthetic multi-domain corpus that exercises the whole platform in seconds.

Five topics (astronomy, cooking, football, finance, medicine), each with its own common
and specialist vocabulary and sentence templates, written as short prose documents. The
pool is corrupted by :func:`dataselect.corruption.corrupt_pool` (duplicates, near
duplicates, flipped labels, junk) and landed as shards in every supported format.

The task it sets, in the spirit of the DSIR target-distribution setup (Xie et al., 2023):
the *target* topics are astronomy and medicine, a minority of the pool. The reference
set (unlabelled) and the evaluation set (labelled) are drawn from the target topics with
more specialist vocabulary than the pool's typical document, so a classifier trained on
a selected subset that is in-target and clean should beat one trained on a random subset
of the same size.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from dataselect.corruption import GROUND_TRUTH_COLUMNS, corrupt_pool
from dataselect.normalize import content_hash
from dataselect.records import ID, LABEL, SHARD, TEXT
from dataselect.storage import as_path, atomic_write_bytes, write_parquet

TARGET_TOPICS = ("astronomy", "medicine")
_ARTICLE = re.compile(r"\b([Aa]) ([aeiouAEIOU])")  # "a experimental" -> "an experimental"
SHARD_FORMATS = (".jsonl", ".jsonl.gz", ".parquet", ".csv")

# Each topic: slot fillers and templates. "special" words are rarer in the pool than in
# the reference and evaluation sets (see DemoConfig.pool_special_rate).
TOPICS: dict[str, dict[str, list[str]]] = {
    "astronomy": {
        "noun": [
            "star",
            "planet",
            "galaxy",
            "telescope",
            "comet",
            "orbit",
            "moon",
            "nebula",
            "asteroid",
            "sky",
            "observatory",
            "eclipse",
            "meteor",
            "satellite",
            "cluster",
            "horizon",
        ],
        "special": [
            "quasar",
            "pulsar",
            "exoplanet",
            "redshift",
            "magnetar",
            "spectrograph",
            "parallax",
            "supernova",
            "accretion disk",
            "dark matter halo",
            "interferometer",
            "gravitational lens",
        ],
        "adj": ["distant", "bright", "faint", "massive", "rotating", "ancient", "cold", "luminous"],
        "verb": ["observed", "tracked", "measured", "photographed", "detected", "mapped", "catalogued"],
        "who": ["astronomers", "the survey team", "an amateur observer", "the space agency", "researchers"],
        "templates": [
            "Last night {who} {verb} a {adj} {noun} close to the {noun2}.",
            "The {special} appears {adj} when the {noun} moves across the {noun2}.",
            "According to {who}, the {noun} completes one orbit every {num} days.",
            "Images of the {special} show a {adj} structure around the {noun}.",
            "{Who} {verb} the {noun} with a new {special} for {num} nights.",
            "A {adj} {noun} was {verb} at a distance of {num} light years.",
        ],
    },
    "medicine": {
        "noun": [
            "patient",
            "doctor",
            "clinic",
            "hospital",
            "treatment",
            "symptom",
            "nurse",
            "vaccine",
            "dose",
            "infection",
            "therapy",
            "diagnosis",
            "surgery",
            "prescription",
            "ward",
            "fever",
        ],
        "special": [
            "antibody",
            "biopsy",
            "cardiology",
            "oncology",
            "pathogen",
            "placebo trial",
            "immunotherapy",
            "endoscopy",
            "antibiotic resistance",
            "insulin pump",
            "radiotherapy",
            "MRI scan",
        ],
        "adj": ["chronic", "acute", "mild", "severe", "routine", "experimental", "preventive", "clinical"],
        "verb": ["treated", "diagnosed", "examined", "monitored", "prescribed", "tested", "admitted"],
        "who": ["the physicians", "a nurse practitioner", "the health ministry", "clinicians", "the care team"],
        "templates": [
            "{Who} {verb} the {patient} after a {adj} {noun} lasting {num} days.",
            "The {special} confirmed a {adj} {noun} in the {noun2}.",
            "Early {noun} reduces the risk of {adj} complications, said {who}.",
            "A {adj} {special} was scheduled before the {noun} at the {noun2}.",
            "In the study, {num} patients received a {adj} {noun} and a {special}.",
            "{Who} {verb} every {noun} for signs of a {adj} {noun2}.",
        ],
    },
    "cooking": {
        "noun": [
            "recipe",
            "oven",
            "sauce",
            "garlic",
            "onion",
            "pasta",
            "bread",
            "butter",
            "pan",
            "soup",
            "salad",
            "dough",
            "spice",
            "kitchen",
            "flour",
            "dessert",
        ],
        "special": [
            "sous vide",
            "braise",
            "emulsion",
            "caramelisation",
            "mise en place",
            "roux",
            "brine",
            "fermentation",
            "julienne",
            "confit",
            "reduction",
            "tempering",
        ],
        "adj": ["crispy", "creamy", "savory", "fresh", "roasted", "tender", "spicy", "golden"],
        "verb": ["simmered", "baked", "chopped", "whisked", "seasoned", "grilled", "stirred"],
        "who": ["the chef", "my grandmother", "the home cook", "the bakery team", "our test kitchen"],
        "templates": [
            "{Who} {verb} the {noun} with {noun2} for {num} minutes.",
            "A {adj} {noun} needs a careful {special} before serving.",
            "Add the {noun} to the {noun2} and keep it {adj}, says {who}.",
            "This {adj} {noun} uses a quick {special} and a little {noun2}.",
            "{Who} {verb} {num} grams of {noun} into the {adj} {noun2}.",
            "For a {adj} finish, try a {special} with the {noun}.",
        ],
    },
    "football": {
        "noun": [
            "match",
            "goal",
            "striker",
            "coach",
            "league",
            "stadium",
            "defender",
            "penalty",
            "season",
            "referee",
            "midfield",
            "keeper",
            "fans",
            "derby",
            "transfer",
            "cup",
        ],
        "special": [
            "offside trap",
            "counter-press",
            "false nine",
            "xG model",
            "back three",
            "set piece",
            "high line",
            "overlap",
            "pressing trigger",
            "zonal marking",
            "VAR review",
            "low block",
        ],
        "adj": ["late", "stunning", "defensive", "home", "away", "decisive", "tactical", "injured"],
        "verb": ["scored", "defended", "pressed", "substituted", "celebrated", "booked", "passed"],
        "who": ["the manager", "the captain", "supporters", "pundits", "the club"],
        "templates": [
            "{Who} said the {adj} {noun} changed the {noun2} in minute {num}.",
            "The {special} left the {noun} exposed during the {adj} {noun2}.",
            "After {num} games, the {noun} {verb} again in a {adj} {noun2}.",
            "{Who} praised the {adj} {special} against the {noun}.",
            "A {adj} {noun} from the {noun2} sealed the result, said {who}.",
            "Their {special} forced a {adj} {noun} before half time.",
        ],
    },
    "finance": {
        "noun": [
            "market",
            "stock",
            "bond",
            "investor",
            "bank",
            "price",
            "fund",
            "dividend",
            "portfolio",
            "earnings",
            "loan",
            "currency",
            "inflation",
            "budget",
            "share",
            "profit",
        ],
        "special": [
            "yield curve",
            "credit default swap",
            "quantitative easing",
            "basis point",
            "short squeeze",
            "hedge ratio",
            "leveraged buyout",
            "price-to-earnings ratio",
            "liquidity premium",
            "convertible note",
            "margin call",
            "duration risk",
        ],
        "adj": ["volatile", "quarterly", "bullish", "bearish", "steady", "annual", "fiscal", "global"],
        "verb": ["rallied", "fell", "traded", "invested", "reported", "hedged", "borrowed"],
        "who": ["analysts", "the central bank", "traders", "the finance minister", "fund managers"],
        "templates": [
            "{Who} expect the {noun} to stay {adj} after the {noun2} report.",
            "The {special} moved {num} basis points as the {noun} {verb}.",
            "A {adj} {noun} pushed the {noun2} higher, according to {who}.",
            "{Who} {verb} in the {noun} despite a {adj} {special}.",
            "Shares of the {noun} {verb} {num} percent on {adj} {noun2} news.",
            "The {adj} {special} worried {who} holding the {noun}.",
        ],
    },
}

# Sentences any topic may contain: they make documents less separable by single words.
GENERIC = [
    "This was reported on {weekday} and discussed widely online.",
    "Many readers asked for more details, which we will share soon.",
    "The full story continues below, with comments from readers.",
    "It is not yet clear what happens next, but the interest is real.",
    "Several people we spoke to described it as surprising.",
    "More information is expected later this {period}.",
]
WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
PERIODS = ["week", "month", "year", "season"]


@dataclass
class DemoConfig:
    """Shape of the synthetic corpus."""

    # Topic shares of the clean pool: the targets are a minority, so random picks mostly miss them.
    pool_topic_weights: tuple[float, ...] = (0.10, 0.10, 0.27, 0.27, 0.26)  # order of TOPICS
    sentences_min: int = 5
    sentences_max: int = 9
    pool_special_rate: float = 0.15  # chance a specialist slot keeps its specialist word in the pool
    target_special_rate: float = 0.9  # same in the reference and eval sets
    generic_rate: float = 0.2  # share of sentences that are topic-free filler
    off_topic_rate: float = 0.1  # share of sentences taken from another topic
    n_reference: int = 200
    n_eval: int = 400


@dataclass(frozen=True)
class DemoPaths:
    root: str
    landing: str  # folder of pool shards, one per format at least
    reference: str  # unlabelled target-topic documents (JSONL)
    evaluation: str  # labelled held-out target-topic documents (JSONL)
    ground_truth: str  # Parquet: id, shard and the corruption ground-truth columns

    @property
    def eval(self) -> str:
        """Alias of :attr:`evaluation`."""
        return self.evaluation


class _Draws:
    """Uniform draws from a seeded numpy generator, taken in blocks.

    Text generation makes ~100k tiny random choices; one ``Generator`` call each costs
    microseconds of overhead, so uniforms are drawn 64k at a time and consumed here.
    """

    def __init__(self, rng: np.random.Generator, block: int = 65536):
        self.rng, self.block = rng, block
        self.values, self.position = rng.random(block).tolist(), 0

    def uniform(self) -> float:
        if self.position == self.block:
            self.values, self.position = self.rng.random(self.block).tolist(), 0
        self.position += 1
        return self.values[self.position - 1]

    def index(self, n: int) -> int:
        return min(int(self.uniform() * n), n - 1)

    def pick(self, items: list[str]) -> str:
        return items[self.index(len(items))]


def _sentence(topic: str, draws: _Draws, special_rate: float) -> str:
    vocabulary = TOPICS[topic]
    template = draws.pick(vocabulary["templates"])
    nouns = vocabulary["noun"]
    first = draws.index(len(nouns))
    second = (first + 1 + draws.index(len(nouns) - 1)) % len(nouns)  # a different noun
    # A specialist slot falls back to a common noun when the specialist word is not used:
    # in the pool the jargon is rare, in the target sets it is frequent.
    special = draws.pick(vocabulary["special"]) if draws.uniform() < special_rate else draws.pick(nouns)
    who = draws.pick(vocabulary["who"])
    return template.format(
        noun=nouns[first],
        noun2=nouns[second],
        patient="patient",
        special=special,
        adj=draws.pick(vocabulary["adj"]),
        verb=draws.pick(vocabulary["verb"]),
        who=who,
        Who=who[0].upper() + who[1:],
        num=2 + draws.index(398),
    )


def _document(topic: str, draws: _Draws, special_rate: float, config: DemoConfig) -> str:
    others = [t for t in TOPICS if t != topic]
    sentences = []
    for _ in range(config.sentences_min + draws.index(config.sentences_max - config.sentences_min + 1)):
        kind = draws.uniform()
        if kind < config.generic_rate:
            sentences.append(draws.pick(GENERIC).format(weekday=draws.pick(WEEKDAYS), period=draws.pick(PERIODS)))
        elif kind < config.generic_rate + config.off_topic_rate:
            sentences.append(_sentence(draws.pick(others), draws, config.pool_special_rate))
        else:
            sentences.append(_sentence(topic, draws, special_rate))
    # Two paragraphs, so CSV shards carry newlines inside quoted fields.
    cut = len(sentences) // 2
    return _ARTICLE.sub(r"\1n \2", " ".join(sentences[:cut]) + "\n\n" + " ".join(sentences[cut:]))


def _documents(topics: list[str], draws: _Draws, special_rate: float, config: DemoConfig, exclude: set[str]) -> list[str]:
    """One document per topic entry, none hashing equal to ``exclude`` or to each other."""
    texts = []
    for topic in topics:
        while True:
            text = _document(topic, draws, special_rate, config)
            digest = content_hash(text)
            if digest not in exclude:
                exclude.add(digest)
                texts.append(text)
                break
    return texts


def _jsonl_bytes(frame: pd.DataFrame) -> bytes:
    rows = frame.to_dict("records")
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode("utf-8")


def _csv_bytes(frame: pd.DataFrame) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(frame.columns)
    writer.writerows(frame.itertuples(index=False, name=None))
    return buffer.getvalue().encode("utf-8")


def _write_shard(path: str, frame: pd.DataFrame) -> None:
    if path.endswith(".jsonl.gz"):
        # mtime=0 and no file name in the header: byte-identical output for a seed.
        atomic_write_bytes(path, gzip.compress(_jsonl_bytes(frame), mtime=0))
    elif path.endswith(".jsonl"):
        atomic_write_bytes(path, _jsonl_bytes(frame))
    elif path.endswith(".parquet"):
        write_parquet(path, pa.table({c: pa.array(frame[c].tolist(), pa.string()) for c in frame.columns}))
    else:
        atomic_write_bytes(path, _csv_bytes(frame))


def write_demo(
    directory: str | os.PathLike,
    seed: int = 0,
    n_records: int = 3000,
    n_shards: int = 4,
    config: DemoConfig | None = None,
) -> DemoPaths:
    """Write the demo corpus under ``directory``; same seed, same bytes.

    ``n_records`` is the clean pool size before corruption (corruption adds ~18% rows).
    Shard formats cycle through ``SHARD_FORMATS``, so ``n_shards >= 4`` covers them all.
    """
    config = config or DemoConfig()
    root = as_path(directory)
    topics = list(TOPICS)
    pool_rng, target_rng, corrupt_rng = (np.random.default_rng([seed, stream]) for stream in range(3))

    pool_topics = [topics[i] for i in pool_rng.choice(len(topics), n_records, p=np.array(config.pool_topic_weights))]
    seen: set[str] = set()
    pool = pd.DataFrame(
        {
            ID: [f"doc-{i:06d}" for i in range(n_records)],
            TEXT: _documents(pool_topics, _Draws(pool_rng), config.pool_special_rate, config, seen),
            LABEL: pool_topics,
        }
    )
    corrupted = corrupt_pool(pool, seed=int(corrupt_rng.integers(2**31)))

    # Reference and eval share `seen` with the pool, so no text repeats across the three.
    reference_topics = [TARGET_TOPICS[i] for i in target_rng.integers(0, len(TARGET_TOPICS), config.n_reference)]
    eval_topics = [TARGET_TOPICS[i] for i in target_rng.integers(0, len(TARGET_TOPICS), config.n_eval)]
    target_draws = _Draws(target_rng)
    reference = pd.DataFrame(
        {
            ID: [f"ref-{i:05d}" for i in range(config.n_reference)],
            TEXT: _documents(reference_topics, target_draws, config.target_special_rate, config, seen),
        }
    )
    evaluation = pd.DataFrame(
        {
            ID: [f"eval-{i:05d}" for i in range(config.n_eval)],
            TEXT: _documents(eval_topics, target_draws, config.target_special_rate, config, seen),
            LABEL: eval_topics,
        }
    )

    landing = root / "landing"
    shard_of_row = np.empty(len(corrupted), dtype=object)
    for index, rows in enumerate(np.array_split(np.arange(len(corrupted)), n_shards)):
        suffix = SHARD_FORMATS[index % len(SHARD_FORMATS)]
        key = f"pool-{index:05d}-of-{n_shards:05d}"
        _write_shard(str(landing / f"{key}{suffix}"), corrupted.iloc[rows][[ID, TEXT, LABEL]])
        shard_of_row[rows] = key

    truth = corrupted[[ID, *GROUND_TRUTH_COLUMNS]].copy()
    truth.insert(1, SHARD, shard_of_row)
    write_parquet(str(root / "ground_truth.parquet"), pa.Table.from_pandas(truth, preserve_index=False))
    atomic_write_bytes(str(root / "reference.jsonl"), _jsonl_bytes(reference))
    atomic_write_bytes(str(root / "eval.jsonl"), _jsonl_bytes(evaluation))
    return DemoPaths(
        root=str(root),
        landing=str(landing),
        reference=str(root / "reference.jsonl"),
        evaluation=str(root / "eval.jsonl"),
        ground_truth=str(root / "ground_truth.parquet"),
    )
