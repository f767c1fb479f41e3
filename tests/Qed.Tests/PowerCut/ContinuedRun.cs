namespace Qed.Tests.PowerCut;

/// <summary>A session run on a crash state of another session (the input), recorded so that it can be crashed in turn.</summary>
internal sealed class ContinuedRun
{
    public required string Label { get; init; }

    /// <summary>What the input showed: need-check bit, corruption, partial last cluster, leaks.</summary>
    public required InputFeatures Input { get; init; }

    public required RecordedSession Session { get; init; }

    public required GuestModel Model { get; init; }

    public required CrashStateGenerator Generator { get; init; }
}
