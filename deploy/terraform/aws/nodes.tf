data "aws_ami" "ubuntu" {
  most_recent = true
  owners      = ["099720109477"] # Canonical
  filter {
    name   = "name"
    values = ["ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-*"]
  }
}

locals {
  ami = var.ami_id != "" ? var.ami_id : data.aws_ami.ubuntu.id
  # embedded etcd with 3 servers, else K3s's default (SQLite) or the external datastore.
  cluster_init = var.server_count == 3 && var.datastore_endpoint == ""
}

# The servers: the first one starts the cluster, the others join it. Each
# reads the join token from Secrets Manager at boot.
resource "aws_instance" "server" {
  count                  = var.server_count
  ami                    = local.ami
  instance_type          = var.server_instance_type
  subnet_id              = aws_subnet.private[count.index % var.az_count].id
  vpc_security_group_ids = [aws_security_group.servers.id]
  iam_instance_profile   = aws_iam_instance_profile.server.name
  key_name               = var.ssh_key_name != "" ? var.ssh_key_name : null

  metadata_options {
    http_tokens                 = "required"
    http_endpoint               = "enabled"
    http_put_response_hop_limit = 2
  }

  root_block_device {
    volume_size = 40
    volume_type = "gp3"
    encrypted   = true
  }

  user_data = templatefile("${path.module}/server-user-data.sh.tftpl", {
    name             = "${var.cluster_name}-server-${count.index}"
    region           = var.region
    token_secret     = aws_secretsmanager_secret.k3s_token.arn
    k3s_version      = var.k3s_version
    cluster_init     = local.cluster_init && count.index == 0
    join_url         = count.index == 0 ? "" : "https://${cidrhost(aws_subnet.private[0].cidr_block, 10)}:6443"
    datastore_secret = var.datastore_endpoint != "" ? aws_secretsmanager_secret.datastore[0].arn : ""
    private_ip       = cidrhost(aws_subnet.private[count.index % var.az_count].cidr_block, 10 + floor(count.index / var.az_count))
  })
  private_ip = cidrhost(aws_subnet.private[count.index % var.az_count].cidr_block, 10 + floor(count.index / var.az_count))

  tags = { Name = "${var.cluster_name}-server-${count.index}", "k3scale.io/role" = "server" }

  depends_on = [aws_secretsmanager_secret_version.k3s_token, aws_secretsmanager_secret_version.datastore, aws_nat_gateway.this]
}

# Agents: k3scale launches from this template and brings its own user data
# (the join script) and tags; the template fixes image, network and role.
resource "aws_launch_template" "agents" {
  name                   = "${var.cluster_name}-agents"
  image_id               = local.ami
  instance_type          = var.agent_instance_types[0]
  key_name               = var.ssh_key_name != "" ? var.ssh_key_name : null
  vpc_security_group_ids = [aws_security_group.agents.id]
  update_default_version = true

  iam_instance_profile {
    arn = aws_iam_instance_profile.node.arn
  }

  metadata_options {
    http_tokens                 = "required"
    http_endpoint               = "enabled"
    http_put_response_hop_limit = 2
  }

  block_device_mappings {
    device_name = "/dev/sda1"
    ebs {
      volume_size = 40
      volume_type = "gp3"
      encrypted   = true
    }
  }
}
