namespace Qed.Tests.PowerCut;

/// <summary>What lies beneath the image of a workload.</summary>
internal enum BackingKind
{
    None,
    /// <summary>A raw backing file of <see cref="WorkloadSpec.BackingLength"/> bytes (not sector aligned, shorter than the disk).</summary>
    Raw,
    /// <summary>A QED backing file with data in some ranges and holes elsewhere.</summary>
    Qed,
}

/// <summary>One power-cut workload: the image geometry, what lies beneath, the guest requests and how many distinct crash states to check.</summary>
internal sealed record WorkloadSpec
{
    public required string Name { get; init; }

    public required int ClusterSize { get; init; }

    public required int TableSize { get; init; }

    public required long Size { get; init; }

    public BackingKind Backing { get; init; }

    public long BackingLength { get; init; }

    /// <summary>Drive the engine through its async API (else the sync one).</summary>
    public bool UseAsync { get; init; }

    /// <summary>Distinct crash states to check.</summary>
    public required int Target { get; init; }

    /// <summary>Requests written before the recorded session, in a session that closes cleanly (the image the session starts from), or null.</summary>
    public Func<Random, IReadOnlyList<GuestOp>>? Populate { get; init; }

    /// <summary>The guest requests, drawn from the workload's seeded random source.</summary>
    public required Func<Random, IReadOnlyList<GuestOp>> Script { get; init; }

    /// <summary>File name of the backing file in the test directory.</summary>
    public string BackingFileName => Backing switch
    {
        BackingKind.Raw => $"{Name}-base.raw",
        BackingKind.Qed => $"{Name}-base.qed",
        _ => "",
    };

    public override string ToString() => Name;
}
