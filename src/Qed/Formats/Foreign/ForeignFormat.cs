namespace Qed.Formats.Foreign;

/// <summary>A format the library recognises by its signature but does not read, so that such a file is refused by name instead of being read as raw.</summary>
internal sealed class ForeignFormat : ImageFormat
{
    private readonly byte[][] _signatures;
    private readonly int _offset;

    private ForeignFormat(string name, int offset, params byte[][] signatures)
    {
        Name = name;
        _offset = offset;
        _signatures = signatures;
    }

    /// <summary>qcow (version 1): <c>QFI\xfb</c> at 0 with a version below 2 (qcow2, probed first, takes the others).</summary>
    public static ForeignFormat Qcow { get; } = new("qcow", 0, [(byte)'Q', (byte)'F', (byte)'I', 0xfb]);

    /// <summary>VMDK: a sparse extent (<c>KDMV</c>) or a text descriptor.</summary>
    public static ForeignFormat Vmdk { get; } = new("vmdk", 0, "KDMV"u8.ToArray(), "# Disk DescriptorFile"u8.ToArray());

    /// <summary>VirtualBox VDI: its signature at offset 64.</summary>
    public static ForeignFormat Vdi { get; } = new("vdi", 64, [0x7f, 0x10, 0xda, 0xbe]);

    /// <summary>Hyper-V VHDX: <c>vhdxfile</c> at 0.</summary>
    public static ForeignFormat Vhdx { get; } = new("vhdx", 0, "vhdxfile"u8.ToArray());

    /// <summary>Virtual PC / VHD (qemu's <c>vpc</c>): <c>conectix</c> at 0.</summary>
    public static ForeignFormat Vpc { get; } = new("vpc", 0, "conectix"u8.ToArray());

    /// <inheritdoc />
    public override string Name { get; }

    /// <inheritdoc />
    internal override bool Recognizes(ReadOnlySpan<byte> head)
    {
        if (head.Length < _offset)
        {
            return false;
        }
        foreach (byte[] signature in _signatures)
        {
            if (head[_offset..].StartsWith(signature))
            {
                return true;
            }
        }
        return false;
    }
}
