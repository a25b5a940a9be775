"""The recipe registry: recipe name (CLI argument) -> Recipe class. Add a recipe here (one line)."""

from __future__ import annotations

from app.training.recipe import Recipe
from app.training.recipes.image import FashionCNNRecipe
from app.training.recipes.imagenet import EfficientNetLite0Recipe
from app.training.recipes.recommendation import NeuMFRecipe
from app.training.recipes.sentiment import SentimentRecipe
from app.training.recipes.translation import TranslationRecipe

RECIPES: dict[str, type[Recipe]] = {
    "image": FashionCNNRecipe,
    "image-imagenet": EfficientNetLite0Recipe,
    "recommendation": NeuMFRecipe,
    "sentiment": SentimentRecipe,
    "translation": TranslationRecipe,
}
