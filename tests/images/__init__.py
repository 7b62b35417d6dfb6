"""The images: their Dockerfiles and .dockerignore read without Docker (test_dockerfiles.py, no marker),
and the built images (hack/build-images.sh, marker ``images``) inspected from their OCI archives and, for
the trainer, run."""
