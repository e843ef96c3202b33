# Servers and agents: only the ports K3s needs, only between nodes; the API
# from outside only for var.api_allowed_cidrs (empty by default).
resource "aws_security_group" "servers" {
  name        = "${var.cluster_name}-servers"
  description = "K3s servers"
  vpc_id      = aws_vpc.this.id
  tags        = { Name = "${var.cluster_name}-servers" }
}

resource "aws_security_group" "agents" {
  name        = "${var.cluster_name}-agents"
  description = "K3s agents launched by k3scale"
  vpc_id      = aws_vpc.this.id
  tags        = { Name = "${var.cluster_name}-agents" }
}

locals {
  node_groups = {
    servers = aws_security_group.servers.id
    agents  = aws_security_group.agents.id
  }
}

# Kubernetes API (6443/tcp) on the servers, from every node.
resource "aws_vpc_security_group_ingress_rule" "api_from_nodes" {
  for_each                     = local.node_groups
  security_group_id            = aws_security_group.servers.id
  referenced_security_group_id = each.value
  ip_protocol                  = "tcp"
  from_port                    = 6443
  to_port                      = 6443
  description                  = "Kubernetes API from ${each.key}"
}

resource "aws_vpc_security_group_ingress_rule" "api_from_admins" {
  for_each          = toset(var.api_allowed_cidrs)
  security_group_id = aws_security_group.servers.id
  cidr_ipv4         = each.value
  ip_protocol       = "tcp"
  from_port         = 6443
  to_port           = 6443
  description       = "Kubernetes API from an allowed network"
}

# Embedded etcd between servers.
resource "aws_vpc_security_group_ingress_rule" "etcd" {
  security_group_id            = aws_security_group.servers.id
  referenced_security_group_id = aws_security_group.servers.id
  ip_protocol                  = "tcp"
  from_port                    = 2379
  to_port                      = 2380
  description                  = "etcd between servers"
}

# Kubelet (10250/tcp, metrics-server and logs) and flannel VXLAN (8472/udp)
# on every node, from every node.
resource "aws_vpc_security_group_ingress_rule" "kubelet" {
  for_each = {
    for pair in setproduct(keys(local.node_groups), keys(local.node_groups)) : "${pair[0]}-from-${pair[1]}" => pair
  }
  security_group_id            = local.node_groups[each.value[0]]
  referenced_security_group_id = local.node_groups[each.value[1]]
  ip_protocol                  = "tcp"
  from_port                    = 10250
  to_port                      = 10250
  description                  = "kubelet from ${each.value[1]}"
}

resource "aws_vpc_security_group_ingress_rule" "vxlan" {
  for_each = {
    for pair in setproduct(keys(local.node_groups), keys(local.node_groups)) : "${pair[0]}-from-${pair[1]}" => pair
  }
  security_group_id            = local.node_groups[each.value[0]]
  referenced_security_group_id = local.node_groups[each.value[1]]
  ip_protocol                  = "udp"
  from_port                    = 8472
  to_port                      = 8472
  description                  = "flannel VXLAN from ${each.value[1]}"
}

resource "aws_vpc_security_group_egress_rule" "all" {
  for_each          = local.node_groups
  security_group_id = each.value
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "-1"
  description       = "outbound (package mirrors, get.k3s.io, AWS APIs through NAT)"
}
