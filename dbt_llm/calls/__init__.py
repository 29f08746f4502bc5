"""What both adapters share: a planned macro call, its model settings, its ledger and audit rows,
and the verdict on a model."""
