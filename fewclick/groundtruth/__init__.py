"""Ground Truth tools: the task template builder, the CreateLabelingJob launcher (`fewclick labeling-job`),
and the labeling stack's output contract. See README.md, "SageMaker Ground Truth integration"."""
