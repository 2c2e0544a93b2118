"""``embed-gateway eval``: retrieval quality of the gateway's models on the user's own labelled data.

A tool beside the runtime (nothing here is imported by the server): it talks to a gateway over
HTTP with the gateway's own client, like any other client would.

* :mod:`~gateway.eval.data` — BEIR sets and Mem0-style memories as one :class:`Dataset`;
* :mod:`~gateway.eval.plan` — task pairings, dimensions, encodings and bytes per vector (pure);
* :mod:`~gateway.eval.search` — exact search: cosine, Hamming on packed bits, trec_eval's order;
* :mod:`~gateway.eval.metrics` — nDCG@10, recall@10/100, MRR@10 by pytrec_eval;
* :mod:`~gateway.eval.runner` — the async shell: embed, derive sizes, search, score;
* :mod:`~gateway.eval.report` — the table, JSON, chart and TREC run files;
* :mod:`~gateway.eval.command` — the command line (``--url``, or ``--config`` served in process).
"""

from gateway.eval.data import Dataset, EvalDataError, load_beir, load_dataset, load_memories
from gateway.eval.runner import EvalReport, EvalResult, Options, run_eval

__all__ = [
    "Dataset",
    "EvalDataError",
    "EvalReport",
    "EvalResult",
    "Options",
    "load_beir",
    "load_dataset",
    "load_memories",
    "run_eval",
]
