"""The end-to-end Kubeflow pipeline (``definition``), its run folders and step records (``runs``),
the steps that transfer, convert, train and fine-tune (``steps``), and its local run."""
