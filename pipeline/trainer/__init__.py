"""The bundled smoke trainer: a short document-masked training run over a longmix output."""
