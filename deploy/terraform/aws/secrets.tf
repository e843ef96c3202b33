# The K3s join token: generated here, kept in Secrets Manager, read by
# servers and agents at boot with their instance role. It is never in user
# data or tags. (It is in Terraform's state: keep the state encrypted.)
resource "random_password" "k3s_token" {
  length  = 48
  special = false
}

resource "aws_secretsmanager_secret" "k3s_token" {
  name                    = "${var.cluster_name}/k3s-token"
  description             = "K3s join token of cluster ${var.cluster_name}"
  recovery_window_in_days = 7
}

resource "aws_secretsmanager_secret_version" "k3s_token" {
  secret_id     = aws_secretsmanager_secret.k3s_token.id
  secret_string = random_password.k3s_token.result
}

# An external datastore's URL holds a password: a secret too, read by the
# servers at boot.
resource "aws_secretsmanager_secret" "datastore" {
  count                   = var.datastore_endpoint != "" ? 1 : 0
  name                    = "${var.cluster_name}/datastore-endpoint"
  description             = "K3s external datastore of cluster ${var.cluster_name}"
  recovery_window_in_days = 7
}

resource "aws_secretsmanager_secret_version" "datastore" {
  count         = var.datastore_endpoint != "" ? 1 : 0
  secret_id     = aws_secretsmanager_secret.datastore[0].id
  secret_string = var.datastore_endpoint
}

# k3scale's state and lock for `k3scale once` runs (state.backend: dynamodb).
resource "aws_dynamodb_table" "k3scale" {
  name         = "${var.cluster_name}-k3scale"
  billing_mode = "PAY_PER_REQUEST"
  hash_key     = "pk"
  range_key    = "sk"

  attribute {
    name = "pk"
    type = "S"
  }
  attribute {
    name = "sk"
    type = "N"
  }
  ttl {
    attribute_name = "ttl"
    enabled        = true
  }
  point_in_time_recovery {
    enabled = true
  }
  server_side_encryption {
    enabled = true
  }
}
