"""Operations: request queue, promotion gate, lineage, local servers, MLflow registry."""
