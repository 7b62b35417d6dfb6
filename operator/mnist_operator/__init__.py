"""mnist_operator: the kopf operator that turns MnistTraining resources into trainer Jobs.

Handlers only register and delegate; builders and the status reducer are pure. Never imports TensorFlow.
"""

__all__: list[str] = []
