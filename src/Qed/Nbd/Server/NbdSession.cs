using Qed.Nbd.Transport;

namespace Qed.Nbd.Server;

/// <summary>What the handshake settled for one connection: the contract between <see cref="NbdNegotiation"/> and <see cref="NbdTransmissionLoop"/>.</summary>
internal sealed class NbdSession
{
    public NbdSession(NbdTransport transport, NbdExport export, ushort transmissionFlags)
    {
        Transport = transport;
        Export = export;
        TransmissionFlags = transmissionFlags;
    }

    /// <summary>The connection's transport, TLS already applied where it was negotiated.</summary>
    public NbdTransport Transport { get; }

    /// <summary>The export chosen by GO or EXPORT_NAME.</summary>
    public NbdExport Export { get; }

    /// <summary>The transmission flags sent to the client; commands and flags it does not advertise are refused with EINVAL.</summary>
    public ushort TransmissionFlags { get; }

    /// <summary>STRUCTURED_REPLY was negotiated: READ answers in chunks, errors may carry messages.</summary>
    public bool StructuredReplies { get; init; }

    /// <summary>Id of the selected <c>base:allocation</c> context, or 0 when not selected.</summary>
    public uint BaseAllocationContextId { get; init; }

    /// <summary>Id of the selected <c>qemu:allocation-depth</c> context, or 0 when not selected.</summary>
    public uint AllocationDepthContextId { get; init; }
}
