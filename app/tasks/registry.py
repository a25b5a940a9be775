"""Task name -> pipeline class. A new task is one package under app/tasks/ and one line here."""

from __future__ import annotations

from pathlib import Path

from app.config import Settings
from app.protocol.model_config import ModelConfig
from app.tasks.base import Pipeline
from app.tasks.image.pipeline import ImagePipeline
from app.tasks.recommendation.pipeline import RecommendationPipeline
from app.tasks.sentiment.pipeline import SentimentPipeline
from app.tasks.translation.pipeline import TranslationPipeline

PIPELINES: dict[str, type[Pipeline]] = {
    p.task: p for p in (ImagePipeline, SentimentPipeline, TranslationPipeline, RecommendationPipeline)
}


def build_pipeline(version_dir: Path, config: ModelConfig, settings: Settings,
                   inputs: dict[str, list[str]]) -> Pipeline | None:  # fmt: skip
    """The pipeline of a model version (None for `generic` models, served only through OIP infer)."""
    cls = PIPELINES.get(config.task)
    return cls(version_dir, config, settings, inputs) if cls else None
