"""Configuration: one frozen dataclass per stage, nested in `PipelineConfig`.

Loaded from a TOML file, then `--set a.b=value` overrides, then validated: an unknown key,
a value of the wrong type or out of range is a `ConfigError` that names the key. The
resolved config is saved as `config.toml` next to every output so a run can be repeated.
Adding a knob means adding a field here with a default; nothing else threads it through.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import tomllib
import types
import typing
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import tomli_w

from core import storage
from core.io import write_text

EXECUTORS = ("local", "ray")
CRAWL_SOURCES = ("seeds", "url_list", "wat", "warc")  # at most one; none means the sandbox
# filters.language: single engines and cascades (A+B: B asked where A is unsure); none: no filter
LANGUAGE_ENGINES = (
    "fasttext+langdetect", "fasttext", "langdetect", "cld2", "fasttext+cld2", "none",
)  # fmt: skip
CURATE_MODES = ("english", "worldwide")  # worldwide: MetaCLIP 2, an entry list per language
SANDBOX_LANGUAGES = ("en", "fr", "de", "es", "it", "nl", "pt")  # sandbox/concepts.py
# Field metadata of a stage's copy of a pipeline-wide section: filled from that section by
# `PipelineConfig`, neither read from nor written to the stage's own table.
COPY_OF = "copy_of"
_HOST_NAME = re.compile(r"^[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*$")


class ConfigError(ValueError):
    """A config file or override that cannot be used; the message names the key."""


@dataclass(frozen=True)
class SandboxConfig:
    """The embedded web served on loopback when no seeds are given."""

    seed: int = 0
    hosts: int = 4  # one port per host
    pages_per_host: int = 60
    images_per_page: int = 10
    image_size: int = 256  # side of the rendered concept images, pixels
    heldout_per_class: int = 10  # labelled images per class for zero-shot evaluation
    slow_seconds: float = 0.3  # delay of the deliberately slow routes
    bind: str = "127.0.0.1"
    # Port of host 0; host i listens on base_port + i. 0 takes free ports. Image URLs carry
    # the ports, so fixed ports make reruns select exactly the same pairs.
    base_port: int = 0
    # Caption languages: more than one puts half the captions in the first, the rest
    # spread over the others (the worldwide demo); one of SANDBOX_LANGUAGES each.
    languages: tuple[str, ...] = ("en",)

    def ports(self) -> list[int] | None:
        """The configured ports, or None for free ones."""
        return [self.base_port + i for i in range(self.hosts)] if self.base_port else None

    def check(self) -> list[tuple[str, str]]:
        errors = _positive(self, "hosts", "pages_per_host", "images_per_page", "image_size")
        if not 0 <= self.base_port <= 65535 - self.hosts:
            errors.append(("base_port", "must be 0 (free ports) or a port with room for the hosts"))
        if self.bind not in ("127.0.0.1", "localhost", "::1"):
            errors.append(("bind", "the sandbox only binds to loopback"))
        unknown = [code for code in self.languages if code not in SANDBOX_LANGUAGES]
        if unknown or not self.languages or len(set(self.languages)) < len(self.languages):
            errors.append(("languages", f"distinct codes of {', '.join(SANDBOX_LANGUAGES)}"))
        return errors


@dataclass(frozen=True)
class NetRule:
    """One parsed `net.allow_private` entry: an IP network or a host name, and a port
    (None: any port)."""

    network: ipaddress.IPv4Network | ipaddress.IPv6Network | None
    host: str | None
    port: int | None

    def matches(self, host: str, address: str, port: int) -> bool:
        """Does this rule cover a request to `host` (as written in the URL) that reaches
        `address`:`port`? IPv4-mapped IPv6 addresses are compared as their IPv4 form."""
        if self.port is not None and self.port != port:
            return False
        if self.host is not None:
            return self.host == host.strip("[]").rstrip(".").lower()
        assert self.network is not None
        return unmapped(ipaddress.ip_address(address.strip("[]").split("%")[0])) in self.network


def unmapped(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> Any:
    """`ip`, or the IPv4 address inside an IPv4-mapped IPv6 one."""
    mapped = getattr(ip, "ipv4_mapped", None)
    return ip if mapped is None else mapped


def parse_net_rule(entry: str) -> NetRule:
    """Parse `host`, `host:port`, `[v6]:port`, an address or a CIDR network (`10.0.0.0/8`);
    raises ValueError saying what is wrong."""
    host, port = _split_port(entry.strip().lower())
    try:
        return NetRule(unmapped_network(ipaddress.ip_network(host)), None, port)
    except ValueError:
        if "/" in host:
            raise  # a network written wrong, e.g. "10.0.0.1/8" (host bits set)
    name = host.rstrip(".")
    if not _HOST_NAME.match(name):
        raise ValueError("expected host, host:port or a CIDR network like 10.0.0.0/8")
    return NetRule(None, name, port)


def unmapped_network(
    network: ipaddress.IPv4Network | ipaddress.IPv6Network,
) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """A single IPv4-mapped IPv6 address as its IPv4 network; other networks unchanged."""
    if isinstance(network, ipaddress.IPv6Network) and network.prefixlen == 128:
        mapped = network.network_address.ipv4_mapped
        if mapped is not None:
            return ipaddress.IPv4Network(mapped)
    return network


def _split_port(text: str) -> tuple[str, int | None]:
    if text.startswith("["):
        host, close, rest = text[1:].partition("]")
        if not close or (rest and not rest.startswith(":")):
            raise ValueError("a bracketed IPv6 address is written [addr] or [addr]:port")
        return host, _port(rest[1:]) if rest else None
    if text.count(":") == 1:
        host, _, port = text.partition(":")
        return host, _port(port)
    return text, None  # a name, an IPv4 address or network, or a bare IPv6 one


def _port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"bad port {text!r}")
    return int(text)


@dataclass(frozen=True)
class NetConfig:
    """The network policy of every request the pipeline makes (crawler, robots.txt, images).

    Addresses that are not public (loopback, private, link-local, multicast, unspecified,
    reserved, IPv4-mapped IPv6) are refused after DNS resolution, on every hop, unless an
    `allow_private` entry covers the request: `host` (any port), `host:port`, an address,
    or a CIDR network (`10.0.0.0/8`, `127.0.0.1:8080`, `[::1]:8080`). A host entry covers
    the name as written in the URL, whatever it resolves to.
    """

    allow_private: tuple[str, ...] = ()
    # How long a DNS answer is reused (the system resolver reports no TTL); the policy is
    # still checked on every use. Failed lookups are retried after 30 s.
    dns_cache_seconds: float = 300.0

    def rules(self) -> tuple[NetRule, ...]:
        return tuple(parse_net_rule(entry) for entry in self.allow_private)

    def allowing(self, urls: Iterable[str]) -> NetConfig:
        """This policy plus exactly the `host:port` of each URL (the sandbox's origins)."""
        added = [_origin(url) for url in urls]
        entries = self.allow_private + tuple(e for e in added if e not in self.allow_private)
        return dataclasses.replace(self, allow_private=entries)

    def check(self) -> list[tuple[str, str]]:
        for entry in self.allow_private:
            try:
                parse_net_rule(entry)
            except ValueError as exc:
                return [("allow_private", f"entry {entry!r}: {exc}")]
        return _non_negative(self, "dns_cache_seconds")


def _origin(url: str) -> str:
    """`host:port` of an http(s) URL, the default port written out."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    host = parts.hostname or ""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass(frozen=True)
class CrawlConfig:
    """The polite page crawler: which pages to fetch and how gently."""

    seeds: str = ""  # file of seed URLs, one per line; empty means the sandbox web
    # An img2dataset-style URL list (csv, tsv, jsonl, parquet, txt) read instead of crawling.
    url_list: str = ""
    url_col: str = "url"
    caption_col: str = "caption"
    # Common Crawl archives read instead of crawling: WAT metadata or WARC responses. Each is a
    # file, a folder, a glob, or a paths file (`*.paths`, `*.paths.gz`) of archive_base-relative
    # paths, the way Common Crawl lists a crawl's files.
    wat: str = ""
    warc: str = ""
    archive_base: str = "https://data.commoncrawl.org/"  # or s3://commoncrawl/, a mirror
    max_archive_files: int = 0  # read only the first N input files; 0 reads them all
    max_pages: int = 2000
    max_depth: int = 6
    max_pages_per_host: int = 1000
    concurrency: int = 32  # requests in flight across all hosts
    # Polite by default: at most 2 pages of one host in flight, their starts at least
    # per_host_delay seconds apart (raised by the host's robots.txt Crawl-delay). The sandbox
    # crawl (our own web on loopback) ignores per_host_delay and uses 0.
    per_host_connections: int = 2
    per_host_delay: float = 1.0
    # A global cap on page requests started per second across all hosts; 0: no global cap
    # (the per-host limits and `concurrency` alone bound the rate).
    max_requests_per_second: float = 0.0
    max_crawl_delay: float = 30.0  # hosts asking for more are skipped (Nutch)
    respect_robots: bool = True
    user_agent: str = "OpenWITBot/0.1 (+https://github.com/openwit/openwit)"
    timeout: float = 10.0  # per attempt, body included
    deadline: float = 30.0  # per page: every attempt, backoff and redirect hop together
    retries: int = 2  # on 408, 429, 5xx and connection errors
    backoff: float = 0.2  # first retry delay, doubled each time
    max_redirects: int = 5
    max_page_bytes: int = 5_000_000
    max_url_length: int = 1024
    # Crawler traps beyond max_depth: distinct URLs per path pattern of a host (digit runs
    # read as one), and distinct queries per path (endless calendars, session ids).
    max_urls_per_pattern: int = 500
    max_query_variants: int = 50
    same_host_only: bool = False
    # A copy of the pipeline's `net` (not a key of this table); the sandbox adds its ports.
    net: NetConfig = field(default_factory=NetConfig, metadata={COPY_OF: "net"})

    def check(self) -> list[tuple[str, str]]:
        errors = _positive(
            self, "max_pages", "max_pages_per_host", "concurrency", "per_host_connections",
            "timeout", "deadline", "max_page_bytes", "max_url_length", "max_urls_per_pattern",
            "max_query_variants",
        )  # fmt: skip
        errors += _non_negative(
            self, "max_depth", "per_host_delay", "max_requests_per_second", "retries",
            "backoff", "max_redirects", "max_archive_files",
        )  # fmt: skip
        sources = [name for name in CRAWL_SOURCES if getattr(self, name)]
        if len(sources) > 1:
            errors.append(
                (sources[1], f"give one source of candidates, not {' and '.join(sources)}")
            )
        return errors


@dataclass(frozen=True)
class CurateConfig:
    """Text rules, language, exact dedup, query matching and balancing."""

    min_words: int = 3  # DataComp: more than 2 words
    min_chars: int = 6  # DataComp: more than 5 characters
    languages: tuple[str, ...] = ("en",)
    min_language_score: float = 0.0  # fastText scores short English texts low
    queries: str = ""  # query list (or metadata.json); empty: the sandbox's, else the shipped en
    balance_threshold: int = 20_000  # MetaCLIP's t: at most ~t pairs per entry
    dedup_keys: tuple[str, ...] = ("url", "uid")
    language_engine: str = "fasttext+langdetect"  # one of LANGUAGE_ENGINES
    mode: str = "english"  # one of CURATE_MODES
    worldwide_lists: str = ""  # folder of <lang>.txt[.gz] entry lists; empty: the shipped ones

    def check(self) -> list[tuple[str, str]]:
        errors = _positive(self, "balance_threshold")
        if self.language_engine not in LANGUAGE_ENGINES:
            errors.append(("language_engine", f"must be one of {', '.join(LANGUAGE_ENGINES)}"))
        if self.mode not in CURATE_MODES:
            errors.append(("mode", f"must be one of {', '.join(CURATE_MODES)}"))
        if self.mode == "worldwide" and self.language_engine == "none":
            errors.append(("mode", "worldwide needs a language engine"))
        errors += _non_negative(self, "min_words", "min_chars")
        if not 0.0 <= self.min_language_score <= 1.0:
            errors.append(("min_language_score", "must be between 0 and 1"))
        for key in self.dedup_keys:
            if key not in ("url", "uid", "caption"):
                errors.append(("dedup_keys", f"unknown dedup key {key!r}"))
        return errors


# img2dataset's resize modes (keep_ratio_largest: the largest side becomes image_size).
RESIZE_MODES = ("keep_ratio", "keep_ratio_largest", "center_crop", "border", "no")


@dataclass(frozen=True)
class ShardsConfig:
    """Image download, image rules, near-dup removal and the webdataset writer."""

    samples_per_shard: int = 1000
    image_size: int = 256
    resize_mode: str = "keep_ratio"  # one of RESIZE_MODES
    resize_only_if_bigger: bool = False
    encode_format: str = "jpg"  # jpg | png | webp
    encode_quality: int = 95
    min_image_side: int = 200  # DataComp basic
    max_aspect_ratio: float = 3.0  # DataComp basic
    min_image_bytes: int = 5_000  # LAION
    max_image_bytes: int = 20_000_000
    max_image_pixels: int = 89_478_485  # Pillow's decompression-bomb limit
    near_dup_radius: int = 3  # Hamming distance on 64-bit pHash
    concurrency: int = 64
    per_host_connections: int = 16
    timeout: float = 10.0  # per attempt, body included
    deadline: float = 30.0  # per image: every attempt, backoff and redirect hop together
    retries: int = 2
    respect_opt_out: bool = True  # X-Robots-Tag noai, noimageai, noindex, noimageindex
    user_agent: str = "OpenWITBot/0.1 (+https://github.com/openwit/openwit)"
    # A copy of the pipeline's `net` (not a key of this table); the sandbox adds its ports.
    net: NetConfig = field(default_factory=NetConfig, metadata={COPY_OF: "net"})
    # per fetch task: threads that decode, resize and hash; 0: the event loop's own thread
    threads: int = 2
    # The watchdog: when no image of a task finishes for this long (far beyond any request's
    # timeout), the rest are failed as stalled so the run ends; 0: off.
    stall_seconds: float = 600.0

    def check(self) -> list[tuple[str, str]]:
        errors = _positive(
            self, "samples_per_shard", "image_size", "concurrency", "per_host_connections",
            "timeout", "deadline", "max_image_bytes", "max_image_pixels",
        )  # fmt: skip
        errors += _non_negative(
            self, "min_image_side", "min_image_bytes", "near_dup_radius", "retries",
            "stall_seconds", "threads",
        )  # fmt: skip
        if self.resize_mode not in RESIZE_MODES:
            errors.append(("resize_mode", f"must be one of {', '.join(RESIZE_MODES)}"))
        if self.encode_format not in ("jpg", "png", "webp"):
            errors.append(("encode_format", "must be jpg, png or webp"))
        if not 1 <= self.encode_quality <= 100:
            errors.append(("encode_quality", "must be between 1 and 100"))
        if self.max_aspect_ratio < 1.0:
            errors.append(("max_aspect_ratio", "must be at least 1"))
        return errors


@dataclass(frozen=True)
class TrainConfig:
    """The streaming contrastive trainer."""

    shards: str = ""  # shard folder, brace pattern or list file; empty means the run's shards
    # A named open_clip architecture (tiny, demo, ViT-S-32-alt, ViT-B-32; see train.model)
    # overrides the tower fields below; empty: they describe it.
    model: str = ""
    image_size: int = 64
    embed_dim: int = 128
    patch_size: int = 8
    vision_width: int = 128
    vision_layers: int = 3
    vision_head_width: int = 32
    text_width: int = 128
    text_layers: int = 2
    text_heads: int = 4
    context_length: int = 32
    vocab_size: int = 8192  # most BPE ids (markers included) learned from the captions
    tokenizer_captions: int = 200_000  # captions read to learn the BPE vocabulary
    batch_size: int = 64
    epochs: int = 8
    samples_per_epoch: int = 0  # 0: the number of samples in the shards
    samples: int = 0  # the budget: samples to train on in all; 0: epochs x samples_per_epoch
    lr: float = 1e-3
    weight_decay: float = 0.1
    warmup_steps: int = 20
    shuffle_buffer: int = 1000
    workers: int = 1  # dataloader worker processes per rank
    seed: int = 0
    device: str = "cpu"
    max_seconds: float = 0.0  # a safety cap on wall time; 0: none (results then vary by machine)
    checkpoint_every: int = 0  # steps; 0: ten checkpoints per run (every total steps / 10)
    eval_set: str = ""  # labelled held-out folder; empty means the sandbox's
    templates: tuple[str, ...] = ()  # zero-shot prompts ("a photo of a {}."); empty: the set's
    retrieval_shards: str = ""  # held-out shards for image<->text recall@1/5; empty: none
    precision: str = "fp32"  # fp32 | bf16 (autocast)
    compile: bool = False  # torch.compile the model
    accum_steps: int = 1  # micro-batches per step; the loss is still the full batch's

    def check(self) -> list[tuple[str, str]]:
        errors = _positive(
            self, "image_size", "embed_dim", "batch_size", "epochs", "context_length", "lr",
            "accum_steps", "tokenizer_captions", "patch_size", "vision_width",
            "vision_head_width", "text_heads",
        )  # fmt: skip
        if self.precision not in ("fp32", "bf16"):
            errors.append(("precision", "must be fp32 or bf16"))
        if self.batch_size % self.accum_steps:
            errors.append(("accum_steps", "must divide batch_size"))
        if self.vocab_size < 259:
            errors.append(("vocab_size", "must be at least 259: 256 bytes and 3 markers"))
        if self.context_length < 2:
            errors.append(("context_length", "must be at least 2: sot and eot"))
        if not self.model and self.image_size % self.patch_size:
            errors.append(("patch_size", "must divide image_size"))
        if not self.model and self.vision_width % self.vision_head_width:
            errors.append(("vision_head_width", "must divide vision_width"))
        errors += _non_negative(
            self, "samples_per_epoch", "samples", "warmup_steps", "max_seconds", "checkpoint_every"
        )
        if self.text_width % self.text_heads:
            errors.append(("text_width", "must be a multiple of text_heads"))
        return errors


@dataclass(frozen=True)
class ExecutorConfig:
    """Where the parts of a stage run: a process pool here, or a Ray cluster."""

    kind: str = "local"  # local | ray
    workers: int = 2  # local: worker processes; ray: tasks in flight (0: the cluster's CPUs)
    ray_address: str = "auto"  # `ray start` head HOST:PORT, or auto (RAY_ADDRESS / local)

    def check(self) -> list[tuple[str, str]]:
        errors = _non_negative(self, "workers")
        if self.kind not in EXECUTORS:
            errors.append(("kind", f"must be one of {', '.join(EXECUTORS)}"))
        if self.kind == "local" and self.workers == 0:
            errors.append(("workers", "must be positive for the local executor"))
        return errors


@dataclass(frozen=True)
class PipelineConfig:
    workdir: str = "runs/demo"  # a local folder or a URL (s3://bucket/run)
    seed: int = 0  # every random decision derives from (key, seed)
    # Rows per part: the unit a stage reads, writes, resumes and hands to a worker. Memory
    # is bounded by part_rows x workers, never by the number of pairs.
    part_rows: int = 250_000
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)
    net: NetConfig = field(default_factory=NetConfig)
    sandbox: SandboxConfig = field(default_factory=SandboxConfig)
    crawl: CrawlConfig = field(default_factory=CrawlConfig)
    curate: CurateConfig = field(default_factory=CurateConfig)
    shards: ShardsConfig = field(default_factory=ShardsConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        # One network policy: the crawler's and the downloader's copies are always `net`.
        for name in ("crawl", "shards"):
            stage = getattr(self, name)
            if stage.net != self.net:
                object.__setattr__(self, name, dataclasses.replace(stage, net=self.net))

    def check(self) -> list[tuple[str, str]]:
        return _positive(self, "part_rows")

    @property
    def root(self) -> str:
        return self.workdir


def _positive(obj: Any, *names: str) -> list[tuple[str, str]]:
    return [(n, "must be positive") for n in names if getattr(obj, n) <= 0]


def _non_negative(obj: Any, *names: str) -> list[tuple[str, str]]:
    return [(n, "must not be negative") for n in names if getattr(obj, n) < 0]


# ---------------------------------------------------------------- loading


def load_config(
    path: str | Path | None = None, overrides: list[str] | None = None
) -> PipelineConfig:
    """Defaults, then the TOML file at `path`, then `key=value` overrides, validated."""
    data: dict[str, Any] = {}
    if path:
        data = _read_toml(str(path))
    for item in overrides or []:
        _apply_override(data, item)
    config = _build(PipelineConfig, data, prefix="")
    _validate(config, prefix="")
    return config


def _read_toml(path: str) -> dict[str, Any]:
    try:
        return tomllib.loads(storage.read_bytes(path).decode("utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None


def _apply_override(data: dict[str, Any], item: str) -> None:
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set expects key=value, got {item!r}")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()  # a bare string
    node = data
    parts = key.split(".")
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"unknown config key: {key}")
        node = child
    node[parts[-1]] = value


def _build(cls: type, data: dict[str, Any], prefix: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: expected a table")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    copies = {f.name: f.metadata[COPY_OF] for f in dataclasses.fields(cls) if COPY_OF in f.metadata}
    for key in data:
        if key not in names:
            raise ConfigError(f"unknown config key: {prefix}{key}")
        if key in copies:
            raise ConfigError(f"unknown config key: {prefix}{key} (set {copies[key]}.* instead)")
    values: dict[str, Any] = {}
    for name, value in data.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            values[name] = _build(hint, value, prefix=f"{prefix}{name}.")  # type: ignore[arg-type]
        else:
            values[name] = _coerce(value, hint, f"{prefix}{name}")
    return cls(**values)


def _coerce(value: Any, hint: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        (item_type, _) = typing.get_args(hint)
        return tuple(_coerce(v, item_type, key) for v in value)
    if origin in (types.UnionType, typing.Union):
        raise ConfigError(f"{key}: unsupported config type {hint}")
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is bool and not isinstance(value, bool):
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if hint is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if not isinstance(value, hint):
        raise ConfigError(f"{key}: expected {hint.__name__}, got {value!r}")
    return value


def _validate(obj: Any, prefix: str) -> None:
    for key, message in obj.check():
        raise ConfigError(f"{prefix}{key}: {message} (got {getattr(obj, key)!r})")
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            _validate(value, prefix=f"{prefix}{f.name}.")


def config_to_dict(config: Any) -> dict[str, Any]:
    """The config as nested dicts, without the stages' copies of pipeline-wide sections."""
    data: dict[str, Any] = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if COPY_OF in f.metadata:
            continue
        data[f.name] = config_to_dict(value) if dataclasses.is_dataclass(value) else value
    return data


def save_config(config: PipelineConfig, path: str | Path) -> None:
    """Write the resolved config as TOML (atomically); `load_config(path)` reads it back."""
    write_text(path, tomli_w.dumps(config_to_dict(config)))
