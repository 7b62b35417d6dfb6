"""Names that identify the MnistTraining custom resource on the API server."""

from typing import Final

GROUP: Final = "training.mnist-operator.io"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"
KIND: Final = "MnistTraining"
PLURAL: Final = "mnisttrainings"
SINGULAR: Final = "mnisttraining"
SHORT_NAMES: Final = ("mnist", "mt")
CATEGORIES: Final = ("ml", "training")
CRD_NAME: Final = f"{PLURAL}.{GROUP}"
