namespace Qed.Nbd.Server;

/// <summary>
/// The metadata contexts an export offers and how LIST/SET_META_CONTEXT queries select them (NBD.md 4.1, 4.3):
/// <c>base:allocation</c> always, <c>qemu:allocation-depth</c> when the export enables it. Ids are fixed per context.
/// </summary>
internal static class NegotiationMetaContexts
{
    public const string BaseAllocation = "base:allocation";
    public const string AllocationDepth = "qemu:allocation-depth";
    public const uint BaseAllocationId = 1;
    public const uint AllocationDepthId = 2;

    /// <summary>
    /// The contexts <paramref name="queries"/> select on <paramref name="export"/>, in a fixed order without repeats.
    /// For LIST, no queries means every context and a bare namespace (<c>base:</c>, <c>qemu:</c>) is a wildcard; for
    /// SET only exact names count. Unknown namespaces and names select nothing and are not errors.
    /// </summary>
    public static (bool BaseAllocation, bool AllocationDepth) Select(NbdExport export, IReadOnlyList<string> queries, bool list)
    {
        if (list && queries.Count == 0)
        {
            return (true, export.AllocationDepth);
        }

        bool baseAllocation = false;
        bool allocationDepth = false;
        foreach (string query in queries)
        {
            baseAllocation |= query == BaseAllocation || (list && query == "base:");
            allocationDepth |= export.AllocationDepth && (query == AllocationDepth || (list && query == "qemu:"));
        }

        return (baseAllocation, allocationDepth);
    }
}
