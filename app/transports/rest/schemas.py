"""Typed shapes of the Open Inference Protocol REST bodies, for the OpenAPI schema.

The infer route decodes bodies with ``app.transports.rest.codec`` (faster on large tensors and
able to read the binary extension); these models document the same wire format.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.protocol.datatypes import DATATYPES

Datatype = Literal[DATATYPES]  # type: ignore[valid-type]


class ErrorBody(BaseModel):
    error: str = Field(description="What went wrong, naming the field, tensor or limit.")


class Live(BaseModel):
    live: bool


class Ready(BaseModel):
    ready: bool


class ModelReadyBody(BaseModel):
    name: str
    ready: bool


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class TensorMetadata(BaseModel):
    name: str
    datatype: Datatype
    shape: list[int] = Field(description="-1 marks a variable dimension (the batch dimension first).")
    # Absent, not null, when the config declares none (as the data plane's metadata has it).
    min: int | float | None = Field(None, exclude_if=lambda v: v is None,
                                    description="Smallest valid value, when the model's config.yaml declares one.")
    max: int | float | None = Field(None, exclude_if=lambda v: v is None,
                                    description="Largest valid value, when the model's config.yaml declares one.")


class ModelMetadata(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]
    state: str = Field(description="READY, LOADING, UNAVAILABLE or UNLOADING.")
    reason: str | None = Field(None, description="Why the version is not ready.")
    task: str
    max_batch_size: int
    providers: list[str] | None = Field(None, description="Execution provider each session really runs on.")


class RequestInput(BaseModel):
    name: str
    shape: list[int]
    datatype: Datatype
    parameters: dict[str, Any] | None = Field(None, description="binary_data_size: bytes of this tensor in the binary section.")
    data: list[Any] | None = Field(None, description="Row-major values, flat or nested.")


class RequestOutput(BaseModel):
    name: str
    parameters: dict[str, Any] | None = Field(None, description="binary_data: true returns this output as raw bytes.")


# The model the documented examples name (path parameters and the infer body): the shipped recommendation
# model, whose one input is a user index.
EXAMPLE_MODEL = "recommendation-neumf"


class InferRequestBody(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"inputs": [{"name": "user", "shape": [1], "datatype": "INT64", "data": [0]}]}]})  # fmt: skip

    id: str | None = None
    parameters: dict[str, Any] | None = Field(
        None, description="binary_data_output: all outputs binary; timeout: microseconds; graph: which graph to run."
    )
    inputs: list[RequestInput]
    outputs: list[RequestOutput] | None = None


class ResponseOutput(BaseModel):
    name: str
    shape: list[int]
    datatype: Datatype
    parameters: dict[str, Any] | None = None
    data: list[Any] | None = None


class InferResponseBody(BaseModel):
    model_name: str
    model_version: str | None = None
    id: str | None = None
    parameters: dict[str, Any] | None = None
    outputs: list[ResponseOutput]


class RepositoryModel(BaseModel):
    name: str
    version: str | None = None
    state: str
    reason: str = ""
    providers: list[str] | None = None
