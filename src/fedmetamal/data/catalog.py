"""Public malware-feature datasets that ``fedmetamal data fetch`` knows how to download.

Every address and checksum here is the publisher's own: the EMBER 2017/2018 archives and their
SHA-256 come from the "Download" table of the EMBER README (github.com/elastic/ember); the
EMBER2024 archive names and their Hugging Face location come from the download code the
EMBER2024 authors publish (github.com/FutureComputing4AI/EMBER2024, ``thrember.download_dataset``),
which gives no checksums or sizes. Where a value is not published it is ``None`` and
``integrity`` says what is checked instead; nothing here is guessed.

The archives hold EMBER *raw* features (JSON lines, one file per split); the EMBER loader reads
*vectorized* folders (``X_train.dat`` ...), which ``fedmetamal data vectorize`` (or EMBER's
``create_vectorized_features``) writes from them. ``content`` says so for each entry, and
``fedmetamal data info`` says it for a folder.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from fedmetamal.errors import DataError

EMBER_README = "https://github.com/elastic/ember (README, section 'Download')"
EMBER_BASE = "https://ember.elastic.co"
EMBER2024_BASE = "https://huggingface.co/datasets/joyce8/EMBER2024/resolve/main"
EMBER2024_SOURCE = (
    "https://github.com/FutureComputing4AI/EMBER2024 (src/thrember/download.py: "
    "hf_hub_download(repo_id='joyce8/EMBER2024', filename='<Type>_<split>.zip'))"
)


@dataclass(frozen=True)
class RemoteDataset:
    """One downloadable archive: where it lives, how to check it, and what is inside."""

    name: str
    title: str
    filename: str
    #: Folder the file is fetched from (``--url`` replaces it); ``None`` when there is no
    #: direct address and the data must be obtained by hand from ``homepage``.
    base_url: str | None
    homepage: str
    #: Published SHA-256 of the archive, or ``None`` when the publisher gives none.
    sha256: str | None
    #: Where ``sha256`` (or the lack of one) comes from.
    sha256_source: str
    #: Published archive size in bytes, or ``None`` when not published.
    size: int | None
    content: str

    @property
    def url(self) -> str | None:
        """The download address with the catalog's base."""
        return None if self.base_url is None else join_url(self.base_url, self.filename)

    @property
    def integrity(self) -> str:
        """What a fetch can verify for this archive, in words for listings."""
        if self.sha256:
            return "SHA-256 (published)"
        return "length + archive CRCs (no published checksum)"


def join_url(base: str, filename: str) -> str:
    """``base`` (a folder address) joined with ``filename``."""
    return f"{base.rstrip('/')}/{filename}"


def _ember(name: str, year: int, filename: str, sha256: str) -> RemoteDataset:
    return RemoteDataset(
        name=name,
        title=f"EMBER {year} PE, v2 raw JSON",
        filename=filename,
        base_url=EMBER_BASE,
        homepage="https://github.com/elastic/ember",
        sha256=sha256,
        sha256_source=EMBER_README,
        size=None,
        content=(
            "train_features_*.jsonl, test_features.jsonl (raw features, label, avclass, "
            "appeared) and the benchmark LightGBM model; `fedmetamal data vectorize` turns "
            "them into the X_/y_*.dat folder the loader reads"
        ),
    )


_EMBER2024_TYPES = {
    "win32": "Win32",
    "win64": "Win64",
    "dotnet": "Dot_Net",
    "apk": "APK",
    "elf": "ELF",
    "pdf": "PDF",
}


def _ember2024(kind: str, split: str) -> RemoteDataset:
    stem = "challenge" if split == "challenge" else f"{_EMBER2024_TYPES[kind]}_{split}"
    name = "ember2024-challenge" if split == "challenge" else f"ember2024-{kind}-{split}"
    what = "challenge set" if split == "challenge" else f"{_EMBER2024_TYPES[kind]} {split}"
    return RemoteDataset(
        name=name,
        title=f"EMBER2024 {what}, v3 raw JSON",
        filename=f"{stem}.zip",
        base_url=EMBER2024_BASE,
        homepage="https://github.com/FutureComputing4AI/EMBER2024",
        sha256=None,
        sha256_source=f"not published; address from {EMBER2024_SOURCE}",
        size=None,
        content=(
            "weekly *.jsonl files of EMBER feature-version-3 raw features and labels; "
            "turn them into a training file with `fedmetamal data vectorize`"
        ),
    )


def _catalog() -> dict[str, RemoteDataset]:
    entries = [
        _ember(
            "ember2017",
            2017,
            "ember_dataset_2017_2.tar.bz2",
            "60142493c44c11bc3fef292b216a293841283d86ff58384b5dc2d88194c87a6d",
        ),
        _ember(
            "ember2018",
            2018,
            "ember_dataset_2018_2.tar.bz2",
            "b6052eb8d350a49a8d5a5396fbe7d16cf42848b86ff969b77464434cf2997812",
        ),
    ]
    entries += [_ember2024(k, s) for k in _EMBER2024_TYPES for s in ("train", "test")]
    entries.append(_ember2024("", "challenge"))
    entries.append(
        RemoteDataset(
            name="bodmas",
            title="BODMAS: 57,293 malware + 77,142 benign PE files, families",
            filename="bodmas.npz",
            base_url=None,
            homepage="https://whyisyoung.github.io/BODMAS/",
            sha256=None,
            sha256_source="not published",
            size=None,
            content=(
                "bodmas.npz (X, y) and bodmas_metadata.csv; shared by the authors through a "
                "cloud folder, with no direct download address: get it from the homepage and "
                "pass the .npz path as dataset.source"
            ),
        )
    )
    return {e.name: e for e in entries}


#: name -> archive, in listing order.
CATALOG: dict[str, RemoteDataset] = _catalog()


def lookup(name: str) -> RemoteDataset:
    """The catalog entry ``name``; a DataError listing the names (and the closest) otherwise."""
    key = name.strip().lower()
    if key in CATALOG:
        return CATALOG[key]
    close = difflib.get_close_matches(key, list(CATALOG), n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    raise DataError(
        f"'{name}' is not a fetchable dataset.{hint}",
        f"Known: {', '.join(CATALOG)} (see `fedmetamal data list`).",
    )
