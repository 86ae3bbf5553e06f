"""Serving: the live detector as an MLflow pyfunc model (`pyfunc_model`: the model's code; `package`: saving it).

Nothing is re-exported here: `pyfunc_model` hands MLflow its model object when imported, so it is
imported by name where it is meant (`package.save_pyfunc_model` only points MLflow at its file).
"""

__all__: list[str] = []
