"""Subject URIs: the names subject indexers (Annif, SKOS vocabularies) give the labels.

A label's URI comes from, in order: a base URL or a table given when serving (`base` +
url-quoted label), the label -> URI table stored in mlabel.json at training time (from
`subject_uris`, a table file, or `subject_uri_base`), else a stable default: the label itself
where it is a URI (a corpus in Annif's form), else `urn:mlabel:<project>:<url-quoted label>`. A
label that is a URI takes its readable name, the `label` Annif answers, from such a table too.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path
from urllib.parse import quote

from mlabel.errors import ConfigError, DataError

SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:\S")  # RFC 3986: scheme ":" then something
OWN_URI = re.compile(r"(?:https?://|urn:)[^\s<>]+", re.IGNORECASE)  # a label that is a URI


def check_uri_base(base: str, name: str = "subject_uri_base") -> None:
    """A base must be a URI prefix (`http://example.org/subjects/`, `urn:example:`)."""
    if not SCHEME.match(base) or any(c.isspace() for c in base):
        raise ConfigError(
            f"{name} is {base!r}, expected a URI prefix such as http://example.org/subject/"
        )


def uris_from_base(base: str, labels: list[str]) -> dict[str, str]:
    """base + url-quoted label, for every label."""
    return {label: base + quote(label, safe="") for label in labels}


def default_uris(project_id: str, labels: list[str]) -> dict[str, str]:
    """The URIs of a model given none: a label that is a URI (http, https or urn: labels read
    from Annif's corpus form) stands for itself; others `urn:mlabel:<project>:<quoted label>`."""
    base = f"urn:mlabel:{quote(project_id, safe='')}:"
    return {
        label: label if OWN_URI.fullmatch(label) else base + quote(label, safe="")
        for label in labels
    }


def serving_uris(
    labels: list[str], stored: dict[str, str] | None, base: str | None, project_id: str
) -> dict[str, str]:
    """The URIs a server answers with: `base` given at serving time, else the model's, else the
    default."""
    if base is not None:
        return uris_from_base(base, labels)
    return dict(stored) if stored else default_uris(project_id, labels)


def serving_subjects(
    labels: list[str],
    stored: tuple[dict[str, str] | None, dict[str, str] | None],
    base: str | None,
    project_id: str,
    table: str | Path | None = None,
) -> tuple[dict[str, str], dict[str, str]]:
    """Each label's URI and readable name when serving: from `table` given at serving time,
    else as `serving_uris` says and the model's names (`stored`: its URIs and names); a label
    without a name is its own."""
    uris, names = stored
    if table is not None:
        read = read_uri_table(table)
        uris, names = covering(read, labels, Path(table).name), subject_names(labels, read)
    else:
        uris = serving_uris(labels, uris, base, project_id)
    return uris, {label: (names or {}).get(label, label) for label in labels}


def training_subjects(
    labels: list[str], base: str | None, table: str | Path | None
) -> tuple[dict[str, str] | None, dict[str, str] | None]:
    """The URIs and readable names to store with a model trained with `subject_uri_base` or
    `subject_uris` (the table read once)."""
    if table is None:
        return (uris_from_base(base, labels) if base is not None else None), None
    read = read_uri_table(table)
    return covering(read, labels, Path(table).name), subject_names(labels, read)


def subject_names(labels: list[str], table: dict[str, str]) -> dict[str, str] | None:
    """The table's name of each label that is one of its URIs (a model trained on an Annif
    corpus has URIs for labels); None where no label has a name other than itself."""
    by_uri: dict[str, str] = {}
    for name, uri in table.items():
        by_uri.setdefault(uri, name)
    names = {label: by_uri[label] for label in labels if by_uri.get(label, label) != label}
    return names or None


def covering(table: dict[str, str], labels: list[str], source: str) -> dict[str, str]:
    """The table's URIs of `labels`, in label order; every label must have one. A label that is
    one of the table's URIs (read from an Annif corpus) has itself."""
    table = {**{uri: uri for uri in table.values()}, **table}
    missing = [label for label in labels if label not in table]
    if missing:
        names = ", ".join(repr(m) for m in missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise DataError(f"{source}: no URI for {len(missing)} of the labels: {names}")
    return {label: table[label] for label in labels}


def read_uri_table(path: str | Path) -> dict[str, str]:
    """label -> URI from a CSV or TSV file: a header with `label` (or Annif's `label_<lang>`)
    and `uri` columns, or Annif's headerless TSV subject file (`<uri>` TAB label)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: subject URI table not found")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    delimiter = "\t" if path.suffix.lower() in (".tsv", ".tab") else ","
    rows = [r for r in csv.reader(text.splitlines(), delimiter=delimiter) if any(r)]
    if not rows:
        raise DataError(f"{path}: empty; expected `label` and `uri` columns")
    if rows[0][0].startswith("<"):  # Annif's TSV subject file has no header
        pairs = [(_cell(r, 1), r[0].strip().strip("<>")) for r in rows]
        return _table(pairs, path, first_row=1)
    label_col, uri_col = _columns(rows[0], path)
    pairs = [(_cell(r, label_col), _cell(r, uri_col)) for r in rows[1:]]
    return _table(pairs, path, first_row=2)


def _columns(header: list[str], path: Path) -> tuple[int, int]:
    names = [h.strip().lower() for h in header]
    labels = [i for i, n in enumerate(names) if n == "label" or n.startswith("label_")]
    if "uri" not in names or not labels:
        raise DataError(
            f"{path}: header {header} lacks a `label` and a `uri` column "
            "(or give Annif's `<uri>` TAB label file)"
        )
    return labels[0], names.index("uri")


def _cell(row: list[str], i: int) -> str:
    return row[i].strip() if i < len(row) else ""


def _table(pairs: list[tuple[str, str]], path: Path, first_row: int) -> dict[str, str]:
    table: dict[str, str] = {}
    for line, (label, uri) in enumerate(pairs, start=first_row):
        if not label or not uri or any(c.isspace() for c in uri):
            raise DataError(f"{path} row {line}: expected a label and a URI without spaces")
        if table.get(label, uri) != uri:
            raise DataError(f"{path} row {line}: label {label!r} is given two URIs")
        table[label] = uri
    return table
