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
    /// <summary>Compressed clusters among the allocated ones (qcow2) [compressed-clusters].</summary>
    public long CompressedClusters { get; init; }
    /// <summary>End of the last cluster in use or referenced in the image file, 0 when the format does not say (QED) [image-end-offset].</summary>
    public long ImageEndOffset { get; init; }
    /// <summary>The first error that stopped part of the check, if any.</summary>
    public string? FirstError { get; init; }

    /// <summary>What the check found, line by line in the order found (qemu-img's stderr lines); empty for QED.</summary>
    internal IReadOnlyList<CheckMessage> Messages { get; init; } = [];

    /// <summary>
    /// Set when the check could not finish (qcow2: a snapshot table or bitmap directory it cannot read): the reason in
    /// QEMU's errno wording (<c>File too large</c>). The counters are then incomplete and qemu-img prints no report, only
    /// <see cref="Messages"/> and <c>Check failed: REASON</c>.
    /// </summary>
    internal string? AbortReason { get; init; }

    /// <summary>True when nothing is wrong.</summary>
    public bool IsClean => CheckErrors == 0 && Corruptions == 0 && Leaks == 0;
}
