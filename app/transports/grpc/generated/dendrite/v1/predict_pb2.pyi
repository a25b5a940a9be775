from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ImageRequest(_message.Message):
    __slots__ = ("model", "version", "images", "top_k")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    model: str
    version: str
    images: _containers.RepeatedScalarFieldContainer[bytes]
    top_k: int
    def __init__(self, model: _Optional[str] = ..., version: _Optional[str] = ..., images: _Optional[_Iterable[bytes]] = ..., top_k: _Optional[int] = ...) -> None: ...

class Label(_message.Message):
    __slots__ = ("index", "label", "probability")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    index: int
    label: str
    probability: float
    def __init__(self, index: _Optional[int] = ..., label: _Optional[str] = ..., probability: _Optional[float] = ...) -> None: ...

class ImageResult(_message.Message):
    __slots__ = ("labels",)
    LABELS_FIELD_NUMBER: _ClassVar[int]
    labels: _containers.RepeatedCompositeFieldContainer[Label]
    def __init__(self, labels: _Optional[_Iterable[_Union[Label, _Mapping]]] = ...) -> None: ...

class ImageResponse(_message.Message):
    __slots__ = ("model", "version", "predictions")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    PREDICTIONS_FIELD_NUMBER: _ClassVar[int]
    model: str
    version: str
    predictions: _containers.RepeatedCompositeFieldContainer[ImageResult]
    def __init__(self, model: _Optional[str] = ..., version: _Optional[str] = ..., predictions: _Optional[_Iterable[_Union[ImageResult, _Mapping]]] = ...) -> None: ...

class SentimentRequest(_message.Message):
    __slots__ = ("model", "version", "texts")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    TEXTS_FIELD_NUMBER: _ClassVar[int]
    model: str
    version: str
    texts: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, model: _Optional[str] = ..., version: _Optional[str] = ..., texts: _Optional[_Iterable[str]] = ...) -> None: ...

class SentimentResult(_message.Message):
    __slots__ = ("label", "probabilities", "truncated")
    class ProbabilitiesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    LABEL_FIELD_NUMBER: _ClassVar[int]
    PROBABILITIES_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    label: str
    probabilities: _containers.ScalarMap[str, float]
    truncated: bool
    def __init__(self, label: _Optional[str] = ..., probabilities: _Optional[_Mapping[str, float]] = ..., truncated: _Optional[bool] = ...) -> None: ...

class SentimentResponse(_message.Message):
    __slots__ = ("model", "version", "predictions")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    PREDICTIONS_FIELD_NUMBER: _ClassVar[int]
    model: str
    version: str
    predictions: _containers.RepeatedCompositeFieldContainer[SentimentResult]
    def __init__(self, model: _Optional[str] = ..., version: _Optional[str] = ..., predictions: _Optional[_Iterable[_Union[SentimentResult, _Mapping]]] = ...) -> None: ...

class TranslationRequest(_message.Message):
    __slots__ = ("model", "version", "texts", "beam_size", "max_length")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    TEXTS_FIELD_NUMBER: _ClassVar[int]
    BEAM_SIZE_FIELD_NUMBER: _ClassVar[int]
    MAX_LENGTH_FIELD_NUMBER: _ClassVar[int]
    model: str
    version: str
    texts: _containers.RepeatedScalarFieldContainer[str]
    beam_size: int
    max_length: int
    def __init__(self, model: _Optional[str] = ..., version: _Optional[str] = ..., texts: _Optional[_Iterable[str]] = ..., beam_size: _Optional[int] = ..., max_length: _Optional[int] = ...) -> None: ...

class TranslationResult(_message.Message):
    __slots__ = ("text", "source_truncated")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    SOURCE_TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    text: str
    source_truncated: bool
    def __init__(self, text: _Optional[str] = ..., source_truncated: _Optional[bool] = ...) -> None: ...

class TranslationResponse(_message.Message):
    __slots__ = ("model", "version", "translations")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    TRANSLATIONS_FIELD_NUMBER: _ClassVar[int]
    model: str
    version: str
    translations: _containers.RepeatedCompositeFieldContainer[TranslationResult]
    def __init__(self, model: _Optional[str] = ..., version: _Optional[str] = ..., translations: _Optional[_Iterable[_Union[TranslationResult, _Mapping]]] = ...) -> None: ...

class RecommendationRequest(_message.Message):
    __slots__ = ("model", "version", "user_id", "k", "exclude_seen")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    EXCLUDE_SEEN_FIELD_NUMBER: _ClassVar[int]
    model: str
    version: str
    user_id: str
    k: int
    exclude_seen: bool
    def __init__(self, model: _Optional[str] = ..., version: _Optional[str] = ..., user_id: _Optional[str] = ..., k: _Optional[int] = ..., exclude_seen: _Optional[bool] = ...) -> None: ...

class Item(_message.Message):
    __slots__ = ("item_id", "title", "score")
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    item_id: str
    title: str
    score: float
    def __init__(self, item_id: _Optional[str] = ..., title: _Optional[str] = ..., score: _Optional[float] = ...) -> None: ...

class RecommendationResponse(_message.Message):
    __slots__ = ("model", "version", "user_id", "cold_start", "items")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    COLD_START_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    model: str
    version: str
    user_id: str
    cold_start: bool
    items: _containers.RepeatedCompositeFieldContainer[Item]
    def __init__(self, model: _Optional[str] = ..., version: _Optional[str] = ..., user_id: _Optional[str] = ..., cold_start: _Optional[bool] = ..., items: _Optional[_Iterable[_Union[Item, _Mapping]]] = ...) -> None: ...
