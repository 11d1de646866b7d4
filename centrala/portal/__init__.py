"""Customer self-service portal: magic-link sign-in, the customer's cases, replies, ratings, four languages."""
