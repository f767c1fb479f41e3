using Qed.Nbd.Transport;

namespace Qed.Nbd.Server;

/// <summary>What one connection's handshake has settled so far (NBD.md 1.9 step 3); STARTTLS forgets most of it.</summary>
internal sealed class NegotiationState
{
    private byte[] payload = new byte[256];

    public NegotiationState(NbdTransport transport) => Transport = transport;

    /// <summary>The transport options are read from and answered on: the socket, then the TLS stream after STARTTLS.</summary>
    public NbdTransport Transport { get; private set; }

    /// <summary>The client set C_FIXED_NEWSTYLE; without it only EXPORT_NAME is legal (NBD.md 1.3).</summary>
    public bool FixedNewstyle { get; set; }

    /// <summary>The client set C_NO_ZEROES: the EXPORT_NAME reply goes without its 124-byte pad.</summary>
    public bool NoZeroes { get; set; }

    public bool StructuredReplies { get; set; }

    /// <summary>The export the last SET_META_CONTEXT named, or null when nothing was selected.</summary>
    public NbdExport? MetaContextExport { get; private set; }

    public uint BaseAllocationContextId { get; private set; }

    public uint AllocationDepthContextId { get; private set; }

    /// <summary>Options received so far, STARTTLS and those before it included (the cap is on the whole handshake).</summary>
    public int OptionCount { get; set; }

    /// <summary>A buffer for an option payload of <paramref name="length"/> bytes, already checked against the option length cap.</summary>
    public Memory<byte> Payload(int length)
    {
        if (payload.Length < length)
        {
            payload = new byte[Math.Max(length, payload.Length * 2)];
        }

        return payload.AsMemory(0, length);
    }

    /// <summary>SET_META_CONTEXT replaces the selection, even with nothing.</summary>
    public void SelectMetaContexts(NbdExport export, uint baseAllocationId, uint allocationDepthId)
    {
        MetaContextExport = export;
        BaseAllocationContextId = baseAllocationId;
        AllocationDepthContextId = allocationDepthId;
    }

    /// <summary>The context ids that apply to <paramref name="export"/>: a selection made for another export does not (nbdkit clears it too).</summary>
    public (uint BaseAllocation, uint AllocationDepth) MetaContextsFor(NbdExport export) =>
        ReferenceEquals(MetaContextExport, export) ? (BaseAllocationContextId, AllocationDepthContextId) : (0, 0);

    /// <summary>After STARTTLS everything negotiated in clear is forgotten (NBD.md 5.1); the client flags stay.</summary>
    public void StartTls(NbdTransport tlsTransport)
    {
        Transport = tlsTransport;
        StructuredReplies = false;
        MetaContextExport = null;
        BaseAllocationContextId = 0;
        AllocationDepthContextId = 0;
    }
}
