"""Translation: encoder once, then a decode loop over the decoder_step graph (``decoding``)."""

from app.tasks.base import Task
from app.tasks.translation import client
from app.tasks.translation.pipeline import TranslationPipeline

TASK = Task(
    pipeline=TranslationPipeline,
    summary="translate German texts to English",
    rpc="Translation",
    client=client,
)
