output "api_endpoint" {
  description = "The Kubernetes API of the first server (inside the VPC)."
  value       = "https://${aws_instance.server[0].private_ip}:6443"
}

output "server_instance_ids" {
  value = aws_instance.server[*].id
}

output "private_subnet_ids" {
  value = aws_subnet.private[*].id
}

output "agent_launch_template" {
  value = aws_launch_template.agents.name
}

output "k3s_token_secret_arn" {
  value = aws_secretsmanager_secret.k3s_token.arn
}

output "k3scale_state_table" {
  value = aws_dynamodb_table.k3scale.name
}

# Paste into k3scale.yaml: the pool and state settings for this cluster.
output "k3scale_config" {
  value = yamlencode({
    cluster = var.cluster_name
    pools = [{
      name     = "workers"
      min      = 1
      max      = 10
      template = { cpu = "2", memory = "8Gi", pods = 110, boot_time = "120s" }
      provider = {
        aws_ec2 = {
          region          = var.region
          server_url      = "https://${aws_instance.server[0].private_ip}:6443"
          launch_template = aws_launch_template.agents.name
          subnets         = aws_subnet.private[*].id
          instance_types  = var.agent_instance_types
          capacity        = var.agent_capacity
          token_secret    = aws_secretsmanager_secret.k3s_token.arn
        }
      }
    }]
    state         = { backend = "dynamodb", table = aws_dynamodb_table.k3scale.name }
    interruptions = { sqs_queue_url = aws_sqs_queue.interruptions.url, region = var.region }
  })
}
