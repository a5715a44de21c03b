"""The shipped default model (model.ckpt); see README.md here."""
