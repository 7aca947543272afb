"""TensorFlow Datasets as a source, without TensorFlow (array_record + `tfds.data_source`).

- ``read_tfds("NAME[/CONFIG][:VERSION]", data_dir, split, field)``: a prepared TFDS dataset's text field,
  read from its directory: array_record through TFDS data sources (no TensorFlow); tfrecord (most of
  the public catalog) through ``tfds`` + TensorFlow where it is installed (extra ``tf``).
- ``build_local_dataset``: the project's own builder, turning local text/JSONL files into a
  versioned TFDS dataset (array_record), so users keep TFDS catalogs of their own data.
- ``build_tiny_shakespeare``: the catalog's ``tiny_shakespeare`` built offline from a local copy
  of its source file (the registered checksum is verified), with the catalog's own splits.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from jaxllm.errors import UserError

_SPEC = re.compile(r"^(?P<name>[a-z0-9_]+)(?:/(?P<config>[\w.-]+))?(?::(?P<version>\d+\.\d+\.\d+))?$")


def _tfds():
    import tensorflow_datasets as tfds  # imported lazily: slow to import
    return tfds


def _parse(spec: str) -> tuple[str, str | None, str | None]:
    m = _SPEC.match(spec)
    if not m:
        raise UserError(f"data.source = 'tfds:{spec}': expected tfds:NAME[/CONFIG][:VERSION], e.g. tfds:tiny_shakespeare:1.0.0.")
    return m["name"], m["config"], m["version"]


def _dataset_dir(data_dir: Path, name: str, config: str | None, version: str | None) -> Path | None:
    base = data_dir / name / (config or "")
    if version:
        return base / version if (base / version).is_dir() else None
    versions = sorted((p for p in base.glob("*.*.*") if p.is_dir()), key=lambda p: tuple(map(int, p.name.split("."))))
    return versions[-1] if versions else None


def _data_source(spec: str, data_dir: str | None, split: str):
    tfds = _tfds()
    name, config, version = _parse(spec)
    root = Path(data_dir or Path.home() / "tensorflow_datasets").expanduser()
    path = _dataset_dir(root, name, config, version)
    if path is None:
        hint = ("for tiny_shakespeare offline, put input.txt in <data_dir>/downloads/manual/ and run "
                "`jaxllm data tfds-build tiny_shakespeare --data-dir DIR`" if name == "tiny_shakespeare" else
                "build it first (`jaxllm data tfds-build NAME --paths FILES --data-dir DIR` for local files)")
        raise UserError(f"TFDS dataset {spec!r} is not prepared in {root}; {hint}.")
    try:
        builder = tfds.builder_from_directory(str(path))
        if builder.info.file_format == tfds.core.FileFormat.ARRAY_RECORD:
            return builder.as_data_source(split=split)
        return _read_with_tensorflow(tfds, builder, spec, split)
    except (ValueError, KeyError) as e:
        raise UserError(f"TFDS dataset {spec!r} in {path}: cannot read split {split!r} ({e}).") from None


def _read_with_tensorflow(tfds, builder, spec: str, split: str) -> list[dict]:
    """tfrecord-format datasets (most of the public catalog) need TensorFlow's reader."""
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        raise UserError(f"TFDS dataset {spec!r} is stored as {builder.info.file_format.value}; reading it needs "
                        "TensorFlow: pip install -e '.[tf]' (or rebuild it with file_format=array_record).") from None
    return list(tfds.as_numpy(builder.as_dataset(split=split, shuffle_files=False)))


def read_tfds(spec: str, data_dir: str | None, split: str, field: str, bad) -> list[str]:
    """All examples' ``field`` as strings, in the dataset's order."""
    source = _data_source(spec, data_dir, split)
    docs = []
    for i in range(len(source)):
        ex = source[i]
        if field not in ex:
            raise UserError(f"TFDS dataset {spec!r}: examples have no field {field!r} (found: {', '.join(ex)}); set data.field.")
        value = ex[field]
        if isinstance(value, bytes):
            try:
                value = value.decode("utf-8")
            except UnicodeDecodeError as e:
                bad(f"TFDS {spec} {split} example {i}: invalid UTF-8 at byte {e.start}")
                continue
        docs.append(value)
    return docs


def _local_builder_class(name: str, version: str, files: list[Path], fmt: str, field: str, document: str):
    tfds = _tfds()
    from jaxllm.data.readers import BadRecords, read_jsonl, read_text

    def _docs():
        bad = BadRecords("raise")
        for f in files:
            if fmt == "jsonl":
                yield from read_jsonl(f, field, bad)
            elif document == "file":
                yield f.read_text(encoding="utf-8")
            else:
                yield from read_text(f, bad)

    class LocalText(tfds.core.GeneratorBasedBuilder, skip_registration=True):
        VERSION = tfds.core.Version(version)

        def _info(self):
            return tfds.core.DatasetInfo(builder=self, description=f"Local {fmt} files: {[str(f) for f in files]}",
                                         features=tfds.features.FeaturesDict({"text": tfds.features.Text()}))

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples()}

        def _generate_examples(self):
            for i, doc in enumerate(_docs()):
                yield i, {"text": doc}

    LocalText.name = name
    return LocalText


def build_local_dataset(name: str, paths: list[str], data_dir: str, version: str = "1.0.0", fmt: str = "text",
                        field: str = "text", document: str = "blocks", file_format: str = "array_record") -> Path:
    """Local text/JSONL files -> TFDS dataset ``name:version`` (split ``train``) under ``data_dir``.

    ``file_format="tfrecord"`` (readable by TensorFlow pipelines) needs TensorFlow to write and read."""
    tfds = _tfds()
    from jaxllm.data.readers import expand_paths
    if not re.fullmatch(r"[a-z0-9_]+", name):
        raise UserError(f"TFDS dataset name {name!r}: use lower-case letters, digits and underscores.")
    files = expand_paths(paths)
    builder = _local_builder_class(name, version, files, fmt, field, document)(data_dir=data_dir, file_format=file_format)
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(try_download_gcs=False))
    return Path(builder.data_dir)


def build_tiny_shakespeare(data_dir: str, source_file: str | None = None) -> Path:
    """The catalog's tiny_shakespeare, offline: the source file is taken from the manual dir
    (``<data_dir>/downloads/manual/input.txt``; ``source_file`` is copied there first) and its
    registered checksum verified by TFDS's download manager."""
    tfds = _tfds()
    from tensorflow_datasets.datasets.tiny_shakespeare.tiny_shakespeare_dataset_builder import Builder

    manual = Path(data_dir) / "downloads" / "manual"
    if source_file:
        manual.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source_file, manual / "input.txt")
    if not (manual / "input.txt").is_file():
        raise UserError(f"tiny_shakespeare offline needs its source file at {manual / 'input.txt'} "
                        "(karpathy/char-rnn's tinyshakespeare input.txt, 1,115,394 bytes).")

    class OfflineTinyShakespeare(Builder, skip_registration=True):
        """Same splits as the catalog builder; reads the file with Python instead of TensorFlow."""

        name = "tiny_shakespeare"
        url_infos = Builder.url_infos  # keeps the registered checksum, so the manual file is found and verified

        def _info(self):
            return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({"text": tfds.features.Text()}))

        def _split_generators(self, dl_manager):
            path = Path(dl_manager.download("https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"))
            text = (path / "input.txt" if path.is_dir() else path).read_text(encoding="utf-8")
            i = int(len(text) * 0.9)
            train, rest = text[:i], text[i:]
            j = int(len(rest) * 0.5)
            return [tfds.core.SplitGenerator(name=n, gen_kwargs={"split_key": n, "split_text": t})
                    for n, t in (("train", train), ("validation", rest[:j]), ("test", rest[j:]))]

    builder = OfflineTinyShakespeare(data_dir=data_dir, file_format="array_record")
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        try_download_gcs=False, manual_dir=str(manual)))
    return Path(builder.data_dir)
