using Qed.Nbd.Protocol;

namespace Qed.Nbd.Server.Transmission;

/// <summary>
/// The checks a request passes before it reaches the device, in the order of NBD.md 6.3 (after the magic and the WRITE
/// payload, which the reader handles): command known, flags valid for it and advertised, read-only, command advertised,
/// range (checked unsigned arithmetic), READ length.
/// </summary>
internal static class RequestValidation
{
    /// <summary>Returns 0 when the request may run, else the NBD error to answer and a short message saying why.</summary>
    public static uint Check(in NbdRequest request, NbdSession session, ulong exportSize, int maxPayload, out string message)
    {
        message = "";
        ushort advertised = session.TransmissionFlags;
        ushort allowed;
        switch (request.Type)
        {
            case NbdCommand.Read:
                // DF only means something with structured replies (NBD.md 2.5).
                allowed = (ushort)(NbdCommandFlags.Fua | (session.StructuredReplies && Has(advertised, NbdTransmissionFlags.SendDf) ? NbdCommandFlags.Df : 0));
                break;
            case NbdCommand.Write:
            case NbdCommand.Flush:
            case NbdCommand.Trim:
            case NbdCommand.Cache:
                allowed = NbdCommandFlags.Fua;
                break;
            case NbdCommand.WriteZeroes:
                allowed = (ushort)(NbdCommandFlags.Fua | NbdCommandFlags.NoHole | (Has(advertised, NbdTransmissionFlags.SendFastZero) ? NbdCommandFlags.FastZero : 0));
                break;
            case NbdCommand.BlockStatus:
                allowed = NbdCommandFlags.Fua | NbdCommandFlags.ReqOne;
                break;
            default:
                return Fail(out message, NbdError.Inval, $"invalid request type ({request.Type})");
        }

        if (!Has(advertised, NbdTransmissionFlags.SendFua))
        {
            allowed &= unchecked((ushort)~NbdCommandFlags.Fua);
        }

        if ((request.Flags & ~allowed) != 0)
        {
            return Fail(out message, NbdError.Inval, $"unsupported flags 0x{request.Flags & ~allowed:x} for {Name(request.Type)}");
        }

        bool writes = request.Type is NbdCommand.Write or NbdCommand.Trim or NbdCommand.WriteZeroes;
        if (writes && (session.Export.IsReadOnly || Has(advertised, NbdTransmissionFlags.ReadOnly)))
        {
            return Fail(out message, NbdError.Perm, "export is read-only");
        }

        ushort needed = request.Type switch
        {
            NbdCommand.Flush => NbdTransmissionFlags.SendFlush,
            NbdCommand.Trim => NbdTransmissionFlags.SendTrim,
            NbdCommand.WriteZeroes => NbdTransmissionFlags.SendWriteZeroes,
            _ => 0, // CACHE is answered even when not advertised: some clients send it anyway (NBD.md 2.7)
        };
        if (needed != 0 && !Has(advertised, needed))
        {
            return Fail(out message, NbdError.Inval, $"{Name(request.Type)} is not supported by this export");
        }

        if (request.Type == NbdCommand.BlockStatus && (!session.StructuredReplies || (session.BaseAllocationContextId == 0 && session.AllocationDepthContextId == 0)))
        {
            return Fail(out message, NbdError.Inval, "no metadata context was selected");
        }

        if (request.Type == NbdCommand.Flush)
        {
            return NbdError.None; // offset and length are ignored, as qemu-nbd does (NBD.md 2.7)
        }

        if (request.Offset > exportSize || request.Length > exportSize - request.Offset)
        {
            uint error = request.Type is NbdCommand.Write or NbdCommand.WriteZeroes ? NbdError.NoSpc : NbdError.Inval;
            return Fail(out message, error, $"{Name(request.Type)} of {request.Length} bytes at {request.Offset} is beyond the end of the {exportSize}-byte export");
        }

        if (request.Type == NbdCommand.Read && request.Length > (uint)maxPayload)
        {
            return Fail(out message, NbdError.Inval, $"READ of {request.Length} bytes is larger than the maximum {maxPayload}");
        }

        if (request.Type == NbdCommand.BlockStatus && request.Length == 0)
        {
            return Fail(out message, NbdError.Inval, "BLOCK_STATUS of length 0");
        }

        return NbdError.None;
    }

    /// <summary>The command's name as the spec spells it, for messages.</summary>
    public static string Name(ushort command) => command switch
    {
        NbdCommand.Read => "READ",
        NbdCommand.Write => "WRITE",
        NbdCommand.Disc => "DISC",
        NbdCommand.Flush => "FLUSH",
        NbdCommand.Trim => "TRIM",
        NbdCommand.Cache => "CACHE",
        NbdCommand.WriteZeroes => "WRITE_ZEROES",
        NbdCommand.BlockStatus => "BLOCK_STATUS",
        _ => $"command {command}",
    };

    private static bool Has(ushort flags, ushort flag) => (flags & flag) == flag;

    private static uint Fail(out string message, uint error, string text)
    {
        message = text;
        return error;
    }
}
