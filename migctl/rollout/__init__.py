"""ECS rollouts: plan, deploy, follow the deployment, bake, roll back, status."""
