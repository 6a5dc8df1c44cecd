"""Payment webhook function: verify Stripe-signed events and store each one once in PostgreSQL.

Entry points (the Lambda handlers of the two functions in ``template.yaml``):

- ``payment_webhook.handlers.webhook.lambda_handler``: the HTTP API webhook.
- ``payment_webhook.handlers.migrations.lambda_handler``: the CloudFormation custom resource
  that applies the SQL migrations on deploy.
"""
