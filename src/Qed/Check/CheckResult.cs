namespace Qed.Check;

/// <summary>The counters of a consistency check, with the meaning of QED-FORMAT.md §8.2 (qemu-img's JSON keys in brackets).</summary>
public sealed record CheckResult
{
    /// <summary>Clusters of virtual disk, <c>ceil(image_size / cs)</c> [total-clusters].</summary>
    public long TotalClusters { get; init; }
    /// <summary>L2 entries that point at a data cluster [allocated-clusters].</summary>
    public long AllocatedClusters { get; init; }
    /// <summary>Data entries not exactly one cluster after the previous data entry of their table [fragmented-clusters].</summary>
    public long FragmentedClusters { get; init; }
    /// <summary>Invalid offsets left in place and clusters referenced more than once [corruptions].</summary>
    public long Corruptions { get; init; }
    /// <summary>Invalid offsets zeroed by the repair [corruptions-fixed].</summary>
    public long CorruptionsFixed { get; init; }
    /// <summary>Clusters after the header area that nothing references [leaks].</summary>
    public long Leaks { get; init; }
    /// <summary>Leaked clusters the repair reclaimed [leaks-fixed].</summary>
    public long LeaksFixed { get; init; }
    /// <summary>Table reads or repair writes that failed [check-errors].</summary>
    public long CheckErrors { get; init; }
    /// <summary>The first error that stopped part of the check, if any.</summary>
    public string? FirstError { get; init; }

    /// <summary>True when nothing is wrong.</summary>
    public bool IsClean => CheckErrors == 0 && Corruptions == 0 && Leaks == 0;
}
