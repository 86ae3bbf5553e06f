"""The explicit cleanup: delete the feature tables and video partitions the current manifest no
longer backs (deleted, unreadable, renamed or excluded videos; `automation.inventory`).

Nothing is deleted behind the user's back: `feature_index` reports stale tables and partitions
(metadata and a warning check) and leaves them out of training; this job, launched by hand
(the UI's launchpad), removes them. `dry_run` lists without deleting.
Outdated tables of readable videos are kept: re-extraction overwrites them.
"""

from dagster import Config, OpExecutionContext, Output, job, op

from vad_pipeline.assets.failures import user_errors
from vad_pipeline.automation.inventory import dataset_inventory
from vad_pipeline.automation.partitions import VIDEO_PARTITIONS_NAME
from vad_pipeline.resources.dataset import DatasetResource
from vad_pipeline.resources.storage import VadStorage

CLEANUP_JOB = "cleanup_stale_job"


class CleanupConfig(Config):
    """`dry_run`: report what is stale without deleting; `partitions`: also delete stale video
    partitions (their run history stays in the instance)."""

    dry_run: bool = False
    partitions: bool = True


@op(description="Delete stale feature tables and video partitions (see the job).")
@user_errors
def remove_stale_features(
    context: OpExecutionContext, config: CleanupConfig, storage: VadStorage, dataset: DatasetResource
) -> Output[dict]:
    spec = dataset.load(home=storage.root())
    store, keys = storage.store(), storage.dataset_keys(spec.name)
    inventory = dataset_inventory(store, keys, spec, context.instance.get_dynamic_partitions(VIDEO_PARTITIONS_NAME))
    tables = [t.key for t in inventory.features.stale]
    partitions = sorted(inventory.stale_partitions) if config.partitions else []
    verb = "would delete" if config.dry_run else "deleted"
    for stale in inventory.features.stale:
        if not config.dry_run:
            store.delete(stale.key)
        context.log.info(f"{verb} {store.location(stale.key)}: {stale.reason}")
    for part in partitions:
        if not config.dry_run:
            context.instance.delete_dynamic_partition(VIDEO_PARTITIONS_NAME, part)
        context.log.info(f"{verb} video partition {part!r}: {inventory.stale_partitions[part]}")
    if not tables and not partitions:
        context.log.info("nothing stale")
    done = {"dry_run": config.dry_run, "tables": tables, "partitions": partitions}
    return Output(
        done,
        metadata={
            "dry_run": config.dry_run,
            "tables_removed": 0 if config.dry_run else len(tables),
            "partitions_removed": 0 if config.dry_run else len(partitions),
            "stale_tables": ", ".join(tables) or "none",
            "stale_partitions": ", ".join(partitions) or "none",
        },
    )


@job(name=CLEANUP_JOB, description="Delete the feature tables and video partitions that no readable video backs.")
def cleanup_stale_job() -> None:
    remove_stale_features()


__all__ = ["CLEANUP_JOB", "CleanupConfig", "cleanup_stale_job", "remove_stale_features"]
