"""Ground Truth pre-annotation Lambda: one data object in, the task template's input out (with a task token)."""
