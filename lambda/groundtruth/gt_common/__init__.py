"""Shared data access and settings of the Ground Truth Lambdas (pre-annotation, consolidation, authorizer).

Each handler package stays thin: it parses its event, calls pure logic, and uses these modules for
AWS access (boto3 clients are created lazily and injectable, so tests use botocore's Stubber).
"""
