using Qed.Nbd.Protocol;

namespace Qed.Nbd.Client;

/// <summary>What the handshake settled: the export's size and flags, block sizes, and what was negotiated.</summary>
/// <param name="Size">Export size in bytes.</param>
/// <param name="TransmissionFlags">The server's transmission flags, with the ones that are meaningless in this session cleared (NBD.md 1.7).</param>
/// <param name="MinimumBlockSize">Smallest addressable unit (1 when the server advertised none).</param>
/// <param name="PreferredBlockSize">Preferred request alignment (4096 when the server advertised none).</param>
/// <param name="MaximumPayload">Largest READ/WRITE payload the client sends.</param>
/// <param name="BlockSizesAdvertised">True when the server sent a valid NBD_INFO_BLOCK_SIZE.</param>
/// <param name="Name">The export's canonical name (NBD_INFO_NAME), else the name asked for.</param>
/// <param name="Description">The export's description, or null.</param>
/// <param name="StructuredReplies">True when the server accepted structured replies.</param>
/// <param name="BaseAllocationId">The context id of <c>base:allocation</c>, or null when it was not negotiated.</param>
/// <param name="UsedExportName">True when the export was opened with the EXPORT_NAME fallback rather than GO.</param>
internal sealed record NbdExportInfo(
    long Size,
    ushort TransmissionFlags,
    uint MinimumBlockSize,
    uint PreferredBlockSize,
    uint MaximumPayload,
    bool BlockSizesAdvertised,
    string Name,
    string? Description,
    bool StructuredReplies,
    uint? BaseAllocationId,
    bool UsedExportName)
{
    public bool Has(ushort flag) => (TransmissionFlags & flag) != 0;
}
