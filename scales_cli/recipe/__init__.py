"""Recipes and the rewrite pass: which layers of an FP network become binary, and how.

>>> from scales_cli import load
>>> from scales_cli.recipe import load_recipe, rewrite, save_student
>>> desc = load("IMDN_x4.pth")                                  # doctest: +SKIP
>>> student, report = rewrite(desc, load_recipe("cnn"))          # doctest: +SKIP
>>> save_student("IMDN_x4-cnn.safetensors", student, desc, load_recipe("cnn"))  # doctest: +SKIP
"""

from __future__ import annotations

from .rewrite import LayerDecision, RewriteReport, apply_plan, default_recipe_name, is_transformer, plan, rewrite
from .schema import Recipe, Rule, builtin_names, load_recipe, parse_recipe
from .selection import Layer, Selector, candidate_layers
from .student import load_student, save_student

__all__ = [
    "Layer",
    "LayerDecision",
    "Recipe",
    "RewriteReport",
    "Rule",
    "Selector",
    "apply_plan",
    "builtin_names",
    "candidate_layers",
    "default_recipe_name",
    "is_transformer",
    "load_recipe",
    "load_student",
    "parse_recipe",
    "plan",
    "rewrite",
    "save_student",
]
