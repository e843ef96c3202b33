variable "region" {
  description = "AWS region."
  type        = string
  default     = "eu-west-1"
}

variable "cluster_name" {
  description = "Cluster name: k3scale's `cluster`, and the prefix of every resource."
  type        = string
  default     = "k3s"
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,30}$", var.cluster_name))
    error_message = "cluster_name: lower-case letters, digits and dashes, 2 to 31 characters."
  }
}

variable "vpc_cidr" {
  description = "CIDR of the new VPC."
  type        = string
  default     = "10.40.0.0/16"
}

variable "az_count" {
  description = "Availability zones to spread over (2 or more)."
  type        = number
  default     = 2
  validation {
    condition     = var.az_count >= 2
    error_message = "az_count: at least 2, so a pool survives the loss of one AZ."
  }
}

variable "api_allowed_cidrs" {
  description = "Who may reach the Kubernetes API (6443) from outside the VPC, e.g. your office. Empty: nobody; never 0.0.0.0/0 by default."
  type        = list(string)
  default     = []
}

variable "k3s_version" {
  description = "K3s version for servers and agents."
  type        = string
  default     = "v1.33.4+k3s1"
}

variable "server_count" {
  description = "K3s servers: 1, or 3 for an HA control plane (embedded etcd or an external datastore)."
  type        = number
  default     = 1
  validation {
    condition     = contains([1, 3], var.server_count)
    error_message = "server_count: 1 or 3."
  }
}

variable "datastore_endpoint" {
  description = "External datastore (e.g. postgres://user:pass@host:5432/k3s). Empty: embedded etcd (SQLite with one server)."
  type        = string
  default     = ""
  sensitive   = true
}

variable "server_instance_type" {
  type    = string
  default = "t3.medium"
}

variable "agent_instance_types" {
  description = "Instance types k3scale tries in order for agents."
  type        = list(string)
  default     = ["m6i.large", "m5.large", "m5a.large"]
}

variable "agent_capacity" {
  description = "on-demand, spot, or spot-then-on-demand."
  type        = string
  default     = "spot-then-on-demand"
}

variable "ami_id" {
  description = "AMI for servers and agents. Empty: the latest Ubuntu 24.04 LTS (amd64)."
  type        = string
  default     = ""
}

variable "ssh_key_name" {
  description = "An EC2 key pair for SSH (through SSM or a bastion; nodes have no public IP). Empty: none."
  type        = string
  default     = ""
}
