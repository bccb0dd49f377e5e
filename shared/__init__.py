"""The common kernel every service imports: events, event store, relay, consumers,
projections, read-model database, service runtime, settings and logs."""
