using Qed.Formats;
using Qed.Nbd.Protocol;

namespace Qed.Nbd.Server;

/// <summary>What the handshake tells a client about an export: transmission flags and block sizes (NBD.md 2.5, 3.1-3.4).</summary>
internal static class NegotiationExportInfo
{
    private const uint MinimumBlockSize = 1; // the engine reads and writes any byte range (read-modify-write inside)
    private const int DefaultPreferredBlockSize = 4096;

    public static ushort TransmissionFlags(NbdExport export, bool structuredReplies, NbdServerOptions options)
    {
        ushort flags = NbdTransmissionFlags.HasFlags | NbdTransmissionFlags.SendFlush | NbdTransmissionFlags.SendFua | NbdTransmissionFlags.SendCache;
        if (export.IsReadOnly)
        {
            // NBD.md 3.3: no TRIM / WRITE_ZEROES / FAST_ZERO on a read-only export (qemu-nbd and nbdkit drop them too).
            flags |= NbdTransmissionFlags.ReadOnly;
        }
        else
        {
            flags |= NbdTransmissionFlags.SendTrim | NbdTransmissionFlags.SendWriteZeroes | NbdTransmissionFlags.SendFastZero;
        }

        if (structuredReplies)
        {
            flags |= NbdTransmissionFlags.SendDf; // DF only means something with structured replies
        }

        if (options.MaxConnections > 1)
        {
            // One engine and one cache serve every connection, so a flush covers them all (NBD.md 3.4). With a single
            // connection allowed a multi-conn client would wait for its second connection forever (qemu-nbd clears it too).
            flags |= NbdTransmissionFlags.CanMultiConn;
        }

        return flags;
    }

    /// <summary>Minimum 1, preferred the QED cluster size (4096 for other formats), maximum the largest payload accepted.</summary>
    public static NbdBlockSize BlockSizes(NbdExport export, NbdServerOptions options)
    {
        uint maximum = (uint)options.MaxPayload;
        uint preferred = (uint)PreferredBlockSize(export);
        // The preferred size must be a power of two no larger than the maximum (libnbd ignores the triple otherwise).
        while (preferred > maximum && preferred > 512)
        {
            preferred >>= 1;
        }

        return new NbdBlockSize(MinimumBlockSize, preferred, maximum);
    }

    private static int PreferredBlockSize(NbdExport export)
    {
        // Writes smaller than a cluster into unallocated space cost a copy-up of the rest of the cluster.
        var format = ImageFormats.Find(export.Device.FormatName);
        if (format is null)
        {
            return DefaultPreferredBlockSize;
        }

        try
        {
            int? clusterSize = format.Describe(export.Device).ClusterSize;
            return clusterSize is int size && size >= 512 && int.IsPow2(size) ? size : DefaultPreferredBlockSize;
        }
        catch (ArgumentException)
        {
            return DefaultPreferredBlockSize; // a device that only borrows a registered format's name
        }
    }
}
