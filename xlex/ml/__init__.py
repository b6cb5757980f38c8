"""Neural subgrid models (paper section 2.2): the network, its normalisation,
the hybrid scheme, training data, online training through the solver and
calibration of any scheme.

``make_training_data`` needs only xarray; the network and the scheme need
flax (``pip install "xlex[ml]"``) and are imported when first used.
"""

_LAZY = {
    "make_training_data": "xlex.ml.data",
    "NeuralSGS": "xlex.ml.neural_sgs",
    "ModelFileError": "xlex.ml.neural_sgs",
    "NetworkConfig": "xlex.ml.network",
    "PRESETS": "xlex.ml.network",
    "Normalisation": "xlex.ml.normalisation",
    "normalisation_from_data": "xlex.ml.normalisation",
    "normalisation_from_states": "xlex.ml.normalisation",
    "train_online": "xlex.ml.training",
    "calibrate": "xlex.ml.training",
    "TrainingDivergedError": "xlex.ml.training",
    "LossScales": "xlex.ml.losses",
    "loss_scales": "xlex.ml.losses",
    "rollout_loss": "xlex.ml.losses",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib
        try:
            module = importlib.import_module(_LAZY[name])
        except ModuleNotFoundError as err:
            if err.name and err.name.split(".")[0] in ("flax", "optax"):
                raise ModuleNotFoundError(
                    f"xlex.ml.{name} needs {err.name}: pip install 'xlex[ml]'") from None
            raise
        return getattr(module, name)
    raise AttributeError(f"module 'xlex.ml' has no attribute {name!r}")


__all__ = sorted(_LAZY)
