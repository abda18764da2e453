"""Development tools beside the image's runtime package ``vlmfleet``, not installed in the image.

``known_answer_training`` trains the known-answer checkpoints the image ships; ``agreement``
compares the llava family's batched engine with VLMEvalKit's batch-1 loop. Both import
``vlmfleet`` and run where it runs (the image, or the GPU machine with the carried wheels), with
docker/transformers-4.37/tools on PYTHONPATH (docker/transformers-4.37/README.md).
"""
