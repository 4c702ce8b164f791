"""API Gateway Lambda authorizer (REQUEST type) for Ground Truth task tokens."""
