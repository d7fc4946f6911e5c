"""Reading `/metrics` as Prometheus would: the text, parsed by prometheus-client's own
parser, as samples by name and labels. Tests compare two scrapes (`delta`)."""

from __future__ import annotations

from collections.abc import Mapping

import requests
from prometheus_client.parser import text_string_to_metric_families

Key = tuple[str, frozenset]


class Scrape:
    """One `/metrics` answer: every sample, and the metric families' names."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.samples: dict[Key, float] = {}
        self.families: dict[str, str] = {}  # name -> type
        for family in text_string_to_metric_families(text):
            self.families[family.name] = family.type
            for sample in family.samples:
                self.samples[(sample.name, frozenset(sample.labels.items()))] = sample.value

    def value(self, name: str, **labels: str) -> float:
        """The sample with exactly these labels; 0 when it is not there yet (a counter
        or a label set nothing has counted)."""
        return self.samples.get((name, frozenset(labels.items())), 0.0)

    def labelled(self, name: str) -> list[Mapping[str, str]]:
        """The label sets of a sample name."""
        return [dict(labels) for sample, labels in self.samples if sample == name]

    def names(self) -> set[str]:
        """Every sample name (a histogram's `_bucket`, `_sum`, `_count` included)."""
        return {name for name, _ in self.samples}


def delta(before: Scrape, after: Scrape, name: str, **labels: str) -> float:
    return after.value(name, **labels) - before.value(name, **labels)


def scrape_url(base: str, **headers: str) -> Scrape:
    answer = requests.get(f"{base}/metrics", headers=headers, timeout=30)
    assert answer.status_code == 200, (answer.status_code, answer.text[:300])
    assert answer.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return Scrape(answer.text)


def scrape_client(client) -> Scrape:
    """Through Django's test client (from 127.0.0.1, as its requests come)."""
    answer = client.get("/metrics")
    assert answer.status_code == 200, answer.content[:300]
    return Scrape(answer.content.decode())
