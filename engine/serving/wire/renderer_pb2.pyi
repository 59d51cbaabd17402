from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DTYPE_UNSPECIFIED: _ClassVar[DType]
    DTYPE_UINT8: _ClassVar[DType]
    DTYPE_UINT16: _ClassVar[DType]
    DTYPE_INT32: _ClassVar[DType]

class OutputFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OUTPUT_FORMAT_PNG: _ClassVar[OutputFormat]
    OUTPUT_FORMAT_RAW: _ClassVar[OutputFormat]
DTYPE_UNSPECIFIED: DType
DTYPE_UINT8: DType
DTYPE_UINT16: DType
DTYPE_INT32: DType
OUTPUT_FORMAT_PNG: OutputFormat
OUTPUT_FORMAT_RAW: OutputFormat

class RawArray(_message.Message):
    __slots__ = ("shape", "dtype", "data")
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    shape: _containers.RepeatedScalarFieldContainer[int]
    dtype: DType
    data: bytes
    def __init__(self, shape: _Optional[_Iterable[int]] = ..., dtype: _Optional[_Union[DType, str]] = ..., data: _Optional[bytes] = ...) -> None: ...

class Map(_message.Message):
    __slots__ = ("png", "raw")
    PNG_FIELD_NUMBER: _ClassVar[int]
    RAW_FIELD_NUMBER: _ClassVar[int]
    png: bytes
    raw: RawArray
    def __init__(self, png: _Optional[bytes] = ..., raw: _Optional[_Union[RawArray, _Mapping]] = ...) -> None: ...

class InputImage(_message.Message):
    __slots__ = ("encoded", "raw")
    ENCODED_FIELD_NUMBER: _ClassVar[int]
    RAW_FIELD_NUMBER: _ClassVar[int]
    encoded: bytes
    raw: RawArray
    def __init__(self, encoded: _Optional[bytes] = ..., raw: _Optional[_Union[RawArray, _Mapping]] = ...) -> None: ...

class FeatureVector(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, values: _Optional[_Iterable[float]] = ...) -> None: ...

class ExplicitStyle(_message.Message):
    __slots__ = ("class_cluster", "instance_cluster", "instance_features", "seed")
    class ClassClusterEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: int
        value: int
        def __init__(self, key: _Optional[int] = ..., value: _Optional[int] = ...) -> None: ...
    class InstanceClusterEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: int
        value: int
        def __init__(self, key: _Optional[int] = ..., value: _Optional[int] = ...) -> None: ...
    class InstanceFeaturesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: int
        value: FeatureVector
        def __init__(self, key: _Optional[int] = ..., value: _Optional[_Union[FeatureVector, _Mapping]] = ...) -> None: ...
    CLASS_CLUSTER_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_CLUSTER_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_FEATURES_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    class_cluster: _containers.ScalarMap[int, int]
    instance_cluster: _containers.ScalarMap[int, int]
    instance_features: _containers.MessageMap[int, FeatureVector]
    seed: int
    def __init__(self, class_cluster: _Optional[_Mapping[int, int]] = ..., instance_cluster: _Optional[_Mapping[int, int]] = ..., instance_features: _Optional[_Mapping[int, FeatureVector]] = ..., seed: _Optional[int] = ...) -> None: ...

class Style(_message.Message):
    __slots__ = ("seed", "explicit", "reference_png")
    SEED_FIELD_NUMBER: _ClassVar[int]
    EXPLICIT_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_PNG_FIELD_NUMBER: _ClassVar[int]
    seed: int
    explicit: ExplicitStyle
    reference_png: bytes
    def __init__(self, seed: _Optional[int] = ..., explicit: _Optional[_Union[ExplicitStyle, _Mapping]] = ..., reference_png: _Optional[bytes] = ...) -> None: ...

class RenderRequest(_message.Message):
    __slots__ = ("request_id", "label", "instance", "style", "output_format", "image")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_FIELD_NUMBER: _ClassVar[int]
    STYLE_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FORMAT_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    label: Map
    instance: Map
    style: Style
    output_format: OutputFormat
    image: InputImage
    def __init__(self, request_id: _Optional[str] = ..., label: _Optional[_Union[Map, _Mapping]] = ..., instance: _Optional[_Union[Map, _Mapping]] = ..., style: _Optional[_Union[Style, _Mapping]] = ..., output_format: _Optional[_Union[OutputFormat, str]] = ..., image: _Optional[_Union[InputImage, _Mapping]] = ...) -> None: ...

class ItemError(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: str
    message: str
    def __init__(self, code: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class RenderResponse(_message.Message):
    __slots__ = ("request_id", "png", "raw", "error")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    PNG_FIELD_NUMBER: _ClassVar[int]
    RAW_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    png: bytes
    raw: RawArray
    error: ItemError
    def __init__(self, request_id: _Optional[str] = ..., png: _Optional[bytes] = ..., raw: _Optional[_Union[RawArray, _Mapping]] = ..., error: _Optional[_Union[ItemError, _Mapping]] = ...) -> None: ...

class GetModelInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SemanticClass(_message.Message):
    __slots__ = ("id", "name", "color", "is_thing")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    COLOR_FIELD_NUMBER: _ClassVar[int]
    IS_THING_FIELD_NUMBER: _ClassVar[int]
    id: int
    name: str
    color: _containers.RepeatedScalarFieldContainer[int]
    is_thing: bool
    def __init__(self, id: _Optional[int] = ..., name: _Optional[str] = ..., color: _Optional[_Iterable[int]] = ..., is_thing: _Optional[bool] = ...) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("label_nc", "instance", "feat_num", "size_multiple", "classes", "has_features", "has_encoder", "max_batch_size", "max_image_pixels", "describe_json", "input_kind", "input_nc")
    LABEL_NC_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_FIELD_NUMBER: _ClassVar[int]
    FEAT_NUM_FIELD_NUMBER: _ClassVar[int]
    SIZE_MULTIPLE_FIELD_NUMBER: _ClassVar[int]
    CLASSES_FIELD_NUMBER: _ClassVar[int]
    HAS_FEATURES_FIELD_NUMBER: _ClassVar[int]
    HAS_ENCODER_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    MAX_IMAGE_PIXELS_FIELD_NUMBER: _ClassVar[int]
    DESCRIBE_JSON_FIELD_NUMBER: _ClassVar[int]
    INPUT_KIND_FIELD_NUMBER: _ClassVar[int]
    INPUT_NC_FIELD_NUMBER: _ClassVar[int]
    label_nc: int
    instance: bool
    feat_num: int
    size_multiple: int
    classes: _containers.RepeatedCompositeFieldContainer[SemanticClass]
    has_features: bool
    has_encoder: bool
    max_batch_size: int
    max_image_pixels: int
    describe_json: str
    input_kind: str
    input_nc: int
    def __init__(self, label_nc: _Optional[int] = ..., instance: _Optional[bool] = ..., feat_num: _Optional[int] = ..., size_multiple: _Optional[int] = ..., classes: _Optional[_Iterable[_Union[SemanticClass, _Mapping]]] = ..., has_features: _Optional[bool] = ..., has_encoder: _Optional[bool] = ..., max_batch_size: _Optional[int] = ..., max_image_pixels: _Optional[int] = ..., describe_json: _Optional[str] = ..., input_kind: _Optional[str] = ..., input_nc: _Optional[int] = ...) -> None: ...
