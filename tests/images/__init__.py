"""The built images (hack/build-images.sh), inspected from their OCI archives and, for the trainer, run."""
