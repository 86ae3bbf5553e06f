"""Storage and tables: the TableStore interface (local, memory, any pyarrow file system), Arrow
table helpers, the clip-features table and the one sha256 helper."""

from typing import TYPE_CHECKING

from vad_core._lazy import lazy_exports

if TYPE_CHECKING:
    from vad_core.io.feature_tables import (
        COLUMNS,
        FEATURE_FORMAT_VERSION,
        FeatureResult,
        build_feature_table,
        feature_key,
        is_up_to_date,
        read_clip_features,
        read_feature_matrix,
        results_frame,
        table_counts,
        write_feature_table,
    )
    from vad_core.io.hashing import fingerprint_array, sha256_file, update_from_file, update_from_stream
    from vad_core.io.object_store import S3Settings, S3TableStore, parse_s3_uri, s3_store
    from vad_core.io.store import (
        STORE_SCHEMES,
        FileSystemStore,
        LocalTableStore,
        MemoryTableStore,
        TableStore,
        check_key,
        join_key,
        jsonable,
        open_store,
    )
    from vad_core.io.tables import (
        arrow_feature_matrix,
        atomic_path,
        atomic_write_bytes,
        feature_matrix,
        features_to_arrow,
        schema_metadata,
        to_arrow_table,
        with_metadata,
    )

__all__ = [
    "COLUMNS",
    "FEATURE_FORMAT_VERSION",
    "STORE_SCHEMES",
    "FeatureResult",
    "FileSystemStore",
    "LocalTableStore",
    "MemoryTableStore",
    "S3Settings",
    "S3TableStore",
    "TableStore",
    "arrow_feature_matrix",
    "atomic_path",
    "atomic_write_bytes",
    "build_feature_table",
    "check_key",
    "feature_key",
    "feature_matrix",
    "features_to_arrow",
    "fingerprint_array",
    "is_up_to_date",
    "join_key",
    "jsonable",
    "open_store",
    "parse_s3_uri",
    "read_clip_features",
    "read_feature_matrix",
    "results_frame",
    "s3_store",
    "schema_metadata",
    "sha256_file",
    "table_counts",
    "to_arrow_table",
    "update_from_file",
    "update_from_stream",
    "with_metadata",
    "write_feature_table",
]

__getattr__, __dir__ = lazy_exports(__name__, __file__)
