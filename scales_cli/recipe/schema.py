"""Recipe files (YAML) -> a typed, validated :class:`Recipe`.

A recipe says which conv/linear layers of a network become binary and with which
:class:`~scales_cli.binary.options.BinaryOptions`::

    version: 1
    description: binary 3x3+ convs of the body; head and tail stay FP
    extends: cnn                 # optional: start from another recipe's defaults and rules
    defaults:
      preset: scales             # a named BinaryOptions (scales_cli.binary.presets)
      options: {channel: false}  # field overrides on top of the preset
    rules:                       # later rules override earlier ones for the layers they select
      - name: body-convs
        select: {region: body, type: conv2d, kernel: ">=3", path: "*", exclude: [], last: false, depthwise: false}
        action: binarize         # or keep
        precision: binary        # or int8 (8-bit weights per channel, 8-bit activations) or fp (= keep)
        preset: xnor             # optional: replaces the recipe's default preset *and* its options
        options: {spatial: false}
        required: true           # false: matching no layer is fine (rules for optional blocks)

Options of a layer = preset (rule's, else the defaults') with the overrides of the same level
(rule's options on top of the defaults' options when the rule names no preset). A rule's
``precision`` says what ``binarize`` makes of the layers it selects: ``binary`` (default: the binary
layer of its options), ``int8`` (:mod:`scales_cli.binary.int8`; preset and options do not apply) or
``fp`` (the same as ``action: keep``). Every mistake is a
one-line :class:`RecipeError` naming the file and the key path, with a "did you mean" for typos.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from ..binary.activation import ACTIVATIONS, ALPHA_GRADS
from ..binary.options import BinaryOptions
from ..binary.presets import PRESETS, preset
from ..binary.weight import WEIGHT_BINARIZERS
from ..errors import RecipeError
from .selection import VALID_REGIONS, VALID_TYPES, Selector, parse_kernel_test

SCHEMA_VERSION = 1
ACTIONS: tuple[str, ...] = ("binarize", "keep")
TOP_KEYS: tuple[str, ...] = ("version", "name", "description", "extends", "defaults", "rules")
DEFAULTS_KEYS: tuple[str, ...] = ("preset", "options")
RULE_KEYS: tuple[str, ...] = ("name", "select", "action", "precision", "preset", "options", "required")
PRECISIONS: tuple[str, ...] = ("binary", "int8", "fp")
"""What a selected layer becomes: a binary layer, an INT8 layer, or the float layer as it is."""
SELECT_KEYS: tuple[str, ...] = ("region", "path", "exclude", "type", "kernel", "last", "depthwise")
OPTION_FIELDS: dict[str, str] = {f.name: str(f.type) for f in dataclasses.fields(BinaryOptions)}
# Allowed values of the string-valued BinaryOptions fields, read from the binary registries.
OPTION_CHOICES: dict[str, tuple[str, ...]] = {
    "act": tuple(sorted(ACTIVATIONS)),
    "alpha_grad": tuple(sorted(ALPHA_GRADS)),
    "weight": tuple(sorted(WEIGHT_BINARIZERS)),
}
# Kernel sizes of the re-scaling branches: odd, so a centred k // 2 padding keeps the map size.
ODD_OPTIONS: tuple[str, ...] = ("spatial_kernel", "channel_kernel")
_MAX_EXTENDS_DEPTH = 8


@dataclass(frozen=True)
class OptionSet:
    """A preset name (or None: the BinaryOptions defaults) plus field overrides."""

    preset: str | None = None
    overrides: tuple[tuple[str, Any], ...] = ()

    def resolve(self) -> BinaryOptions:
        base = preset(self.preset) if self.preset else BinaryOptions()
        return dataclasses.replace(base, **dict(self.overrides))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.preset:
            out["preset"] = self.preset
        if self.overrides:
            out["options"] = dict(self.overrides)
        return out


@dataclass(frozen=True)
class Rule:
    name: str
    select: Selector
    action: str = "binarize"
    preset: str | None = None
    overrides: tuple[tuple[str, Any], ...] = ()
    required: bool = True
    precision: str = "binary"

    @property
    def outcome(self) -> str:
        """What the selected layers become: ``binary``, ``int8`` or ``fp`` (``action: keep`` is ``fp``)."""
        return "fp" if self.action == "keep" else self.precision

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "select": self.select.to_dict(), "action": self.action}
        if self.precision != "binary":
            out["precision"] = self.precision
        out.update(OptionSet(self.preset, self.overrides).to_dict())
        if not self.required:
            out["required"] = False
        return out


@dataclass(frozen=True)
class Recipe:
    """A validated recipe with ``extends`` already resolved (rules of the base first)."""

    name: str
    description: str
    defaults: OptionSet
    rules: tuple[Rule, ...]
    source: str  # file path or "built-in NAME": what error messages name
    version: int = SCHEMA_VERSION
    text: str = field(default="", repr=False, compare=False)  # the file as written

    def options_for(self, rule: Rule) -> BinaryOptions:
        """Rule preset replaces the defaults entirely; otherwise rule overrides go on top of the defaults."""
        if rule.preset:
            return OptionSet(rule.preset, rule.overrides).resolve()
        return OptionSet(self.defaults.preset, self.defaults.overrides + rule.overrides).resolve()

    def given_options(self, rule: Rule) -> dict[str, Any]:
        """The option values the recipe writes out for ``rule``'s layers (its presets' values aside)."""
        return dict(rule.overrides if rule.preset else self.defaults.overrides + rule.overrides)

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "name": self.name,
            "description": self.description,
            "defaults": self.defaults.to_dict(),
            "rules": [r.to_dict() for r in self.rules],
        }

    def to_yaml(self) -> str:
        """Self-contained canonical YAML (``extends`` flattened): what a student file stores."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


# ---------------------------------------------------------------------------------------------- lookup


def builtin_dir() -> Path:
    """The shipped recipes (``scales_cli/recipes`` links to the repository's top-level ``recipes/``)."""
    return Path(str(resources.files("scales_cli").joinpath("recipes")))


def builtin_names() -> tuple[str, ...]:
    folder = builtin_dir()
    return tuple(sorted(p.stem for p in folder.glob("*.yaml"))) if folder.is_dir() else ()


def load_recipe(name_or_path: str | Path) -> Recipe:
    """A built-in recipe by name (``cnn``) or a YAML file by path."""
    return _load(name_or_path, base_dir=Path.cwd(), depth=0)


def _read_text(path: Path, text_name: str) -> str:
    """The recipe file as text; bytes that are not UTF-8 (a binary file given by mistake) are one line."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise RecipeError(f"recipe {text_name}: not a text file (byte {exc.start} is not UTF-8; expected a YAML recipe)") from None
    except OSError as exc:
        raise RecipeError(f"recipe {text_name}: cannot be read ({exc.strerror or exc})") from None


def _load(name_or_path: str | Path, base_dir: Path, depth: int) -> Recipe:
    text_name = str(name_or_path)
    path = Path(text_name)
    if not path.is_absolute():
        path = base_dir / path
    if path.suffix in (".yaml", ".yml") or path.is_file():
        if not path.is_file():
            raise RecipeError(f"recipe {text_name}: no such file")
        return parse_recipe(_read_text(path, text_name), source=str(path), name=path.stem, depth=depth)
    builtin = builtin_dir() / f"{text_name}.yaml"
    if builtin.is_file():
        return parse_recipe(builtin.read_text(encoding="utf-8"), source=f"built-in {text_name}", name=text_name, depth=depth)
    names = builtin_names()
    local = next((p for p in (path.with_name(path.name + ext) for ext in (".yaml", ".yml")) if p.is_file()), None)
    hint = f" (did you mean the file {local}?)" if local is not None else _did_you_mean(text_name, names)
    raise RecipeError(f"unknown recipe {text_name!r}{hint} (built-in: {', '.join(names)}; or a path to a .yaml file)")


# --------------------------------------------------------------------------------------------- parsing


def parse_recipe(text: str, *, source: str = "<recipe>", name: str = "recipe", depth: int = 0) -> Recipe:
    """Validate YAML ``text`` into a :class:`Recipe`; ``source`` names the file in messages."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise RecipeError(f"{source}:{where} not valid YAML ({problem})") from None
    if not isinstance(raw, Mapping):
        raise RecipeError(f"{source}: expected a mapping with keys {', '.join(TOP_KEYS)}, got {type(raw).__name__}")
    ctx = _Ctx(source)
    ctx.keys(raw, TOP_KEYS, "")
    version = raw.get("version", SCHEMA_VERSION)
    if version != SCHEMA_VERSION:
        raise RecipeError(f"{source}: version {version!r} is not supported (expected {SCHEMA_VERSION})")
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise RecipeError(f"{source}: description must be a string")

    base: Recipe | None = None
    if raw.get("extends") is not None:
        if depth >= _MAX_EXTENDS_DEPTH:
            raise RecipeError(f"{source}: extends nests deeper than {_MAX_EXTENDS_DEPTH} (a cycle?)")
        base_dir = Path(source).parent if Path(source).is_file() else Path.cwd()
        base = _load(str(raw["extends"]), base_dir=base_dir, depth=depth + 1)

    defaults = ctx.option_set(raw.get("defaults") or {}, "defaults")
    if base is not None:
        defaults = defaults if defaults.preset else OptionSet(base.defaults.preset, base.defaults.overrides + defaults.overrides)
    rules_raw = raw.get("rules") or []
    if not isinstance(rules_raw, list):
        raise RecipeError(f"{source}: rules must be a list of rules, got {type(rules_raw).__name__}")
    own = tuple(ctx.rule(r, i) for i, r in enumerate(rules_raw))
    rules = (base.rules if base else ()) + own
    if not rules:
        raise RecipeError(f"{source}: has no rules (expected at least one rule with action: binarize)")
    names = [r.name for r in own]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise RecipeError(f"{source}: rule name {dupes[0]!r} is used twice (rule names must be unique)")
    recipe_name = raw.get("name", name)
    if not isinstance(recipe_name, str) or not recipe_name:
        raise RecipeError(f"{source}: name must be a non-empty string, got {recipe_name!r}")
    recipe = Recipe(
        name=recipe_name,
        description=description or (base.description if base else ""),
        defaults=defaults,
        rules=rules,
        source=source,
        text=text,
    )
    # Resolve every option set now: a bad preset or value fails at load time, not mid-rewrite.
    recipe.defaults.resolve()
    for rule in recipe.rules:
        recipe.options_for(rule)
    return recipe


class _Ctx:
    """Validation helpers that know the file name for messages."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, where: str, what: str) -> RecipeError:
        return RecipeError(f"{self.source}: {where}: {what}")

    def keys(self, node: Mapping[str, Any], allowed: tuple[str, ...], where: str) -> None:
        for key in node:
            if key not in allowed:
                at = f"{where}.{key}" if where else str(key)
                raise RecipeError(
                    f"{self.source}: unknown key {at!r}{_did_you_mean(str(key), allowed)} (allowed here: {', '.join(allowed)})"
                )

    def mapping(self, node: Any, where: str) -> Mapping[str, Any]:
        if not isinstance(node, Mapping):
            raise self.fail(where, f"expected a mapping, got {type(node).__name__} {node!r}")
        return node

    def option_set(self, node: Any, where: str) -> OptionSet:
        node = self.mapping(node, where)
        self.keys(node, DEFAULTS_KEYS, where)
        return OptionSet(self.preset(node.get("preset"), f"{where}.preset"), self.options(node.get("options"), f"{where}.options"))

    def preset(self, value: Any, where: str) -> str | None:
        if value is None:
            return None
        if value not in PRESETS:
            raise self.fail(where, f"unknown preset {_one_of(value, tuple(PRESETS))}")
        return str(value)

    def options(self, node: Any, where: str) -> tuple[tuple[str, Any], ...]:
        if node is None:
            return ()
        node = self.mapping(node, where)
        self.keys(node, tuple(OPTION_FIELDS), where)
        return tuple((key, self.option_value(key, value, f"{where}.{key}")) for key, value in node.items())

    def option_value(self, key: str, value: Any, where: str) -> Any:
        kind = OPTION_FIELDS[key]
        if kind == "bool" and not isinstance(value, bool):
            raise self.fail(where, f"expected true or false, got {value!r}")
        if kind == "int" and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise self.fail(where, f"expected a positive integer, got {value!r}")
        if key in ODD_OPTIONS and value % 2 == 0:
            raise self.fail(where, f"expected an odd kernel size (1, 3, 5, ...), got {value!r}")
        if kind == "str" and value not in OPTION_CHOICES[key]:
            raise self.fail(where, f"unknown value {_one_of(value, OPTION_CHOICES[key])}")
        return value

    def rule(self, node: Any, index: int) -> Rule:
        where = f"rules[{index}]"
        node = self.mapping(node, where)
        self.keys(node, RULE_KEYS, where)
        name = node.get("name", f"rule{index}")
        if not isinstance(name, str) or not name:
            raise self.fail(f"{where}.name", f"expected a non-empty string, got {name!r}")
        where = f"{where} ({name})"
        if "select" not in node:
            raise self.fail(where, "has no 'select' (use select: {} to select every conv/linear layer)")
        action = node.get("action", "binarize")
        if action not in ACTIONS:
            raise self.fail(f"{where}.action", f"unknown action {_one_of(action, ACTIONS)}")
        required = node.get("required", True)
        if not isinstance(required, bool):
            raise self.fail(f"{where}.required", f"expected true or false, got {required!r}")
        precision = self.precision(node, action, where)
        return Rule(
            name=name,
            select=self.selector(node.get("select") or {}, f"{where}.select"),
            action=action,
            preset=self.preset(node.get("preset"), f"{where}.preset"),
            overrides=self.options(node.get("options"), f"{where}.options"),
            required=required,
            precision=precision,
        )

    def precision(self, node: Mapping[str, Any], action: str, where: str) -> str:
        """The rule's precision; contradictions with ``action``/``preset``/``options`` are refused by name."""
        precision = node.get("precision", "binary")
        if precision not in PRECISIONS:
            raise self.fail(f"{where}.precision", f"unknown precision {_one_of(precision, PRECISIONS)}")
        if action == "keep" and precision != "fp" and "precision" in node:
            raise self.fail(f"{where}.precision", f"{precision!r} contradicts action: keep (a kept layer stays fp)")
        if precision != "binary":
            extra = [key for key in ("preset", "options") if node.get(key) is not None]
            if extra:
                raise self.fail(f"{where}.{extra[0]}", f"applies to binary layers only (this rule's precision is {precision})")
        return str(precision)

    def selector(self, node: Any, where: str) -> Selector:
        node = self.mapping(node, where)
        self.keys(node, SELECT_KEYS, where)
        flags = {}
        for flag in ("last", "depthwise"):
            value = node.get(flag)
            if value is not None and not isinstance(value, bool):
                raise self.fail(f"{where}.{flag}", f"expected true or false, got {value!r}")
            flags[flag] = value
        return Selector(
            region=self.choices(node.get("region"), VALID_REGIONS, f"{where}.region"),
            path=self.strings(node.get("path"), f"{where}.path"),
            exclude=self.strings(node.get("exclude"), f"{where}.exclude"),
            type=self.choices(node.get("type"), VALID_TYPES, f"{where}.type"),
            kernel=self.kernel(node.get("kernel"), f"{where}.kernel"),
            **flags,
        )

    def strings(self, value: Any, where: str) -> tuple[str, ...]:
        items = _as_list(value)
        if not all(isinstance(v, str) and v for v in items):
            raise self.fail(where, f"expected a glob or a list of globs, got {value!r}")
        return tuple(items)

    def choices(self, value: Any, allowed: tuple[str, ...], where: str) -> tuple[str, ...]:
        items = self.strings(value, where)
        for item in items:
            if item not in allowed:
                raise self.fail(where, f"unknown value {_one_of(item, allowed)}")
        return items

    def kernel(self, value: Any, where: str) -> tuple[tuple[str, int], ...]:
        tests = []
        for item in _as_list(value):
            test = parse_kernel_test(str(item)) if isinstance(item, int | str) and not isinstance(item, bool) else None
            if test is None:
                raise self.fail(where, f"expected a kernel size or comparison such as 3, [1, 3] or \">=3\", got {item!r}")
            tests.append(test)
        return tuple(tests)


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def _did_you_mean(word: str, choices: tuple[str, ...] | Any) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _one_of(value: Any, allowed: tuple[str, ...]) -> str:
    """``'sgn' (did you mean 'sign'?) (allowed: a, b)``: the tail of every "unknown X" message."""
    return f"{value!r}{_did_you_mean(str(value), allowed)} (allowed: {', '.join(allowed)})"
