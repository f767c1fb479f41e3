using System.Text;
using Qed.Backing;
using Qed.Format;
using Qed.Formats;

namespace Qed.Image;

// Changing or removing the backing file name in the header (qemu-img rebase, and amend of backing_file/backing_fmt).
//
// The bytes are QEMU's (QED-FORMAT.md §3.4, §7): the new header is the current one with BACKING_FILE set when there is a
// name and BACKING_FORMAT_NO_PROBE set when the format is raw, backing_filename_offset 64 and backing_filename_size the
// name's length; the name follows the header at byte 64. Nothing after the name is erased: a shorter name leaves the
// tail of the old one in the file, as QEMU leaves it.
//
// Write ordering (a crash at any point leaves the old header or the new one, each naming a complete name):
// 1. Refuse before writing anything: a new name while unknown compatible feature bits are set (what follows the header
//    may belong to a feature we do not know, so the name cannot be placed), a header plus name that does not fit in the
//    header area, and names QEMU could not read back (4096 bytes or more, or a NUL byte).
// 2. Header and name within the first 512-byte sector (names up to 448 bytes, nearly all): one write of 64 + length bytes
//    at offset 0, then a flush. One sector is written whole or not at all, so the old header (and the old name it points
//    at) or the new one is on disk.
// 3. A longer name: first the part of it past the first sector, flushed, while the old header still names the old name;
//    then the first sector (new header and the head of the name), flushed. When the old name also reaches past the first
//    sector, step 3's first write overwrites it while the old header still points at it; a crash between the two flushes
//    then leaves a header naming a mix of both names (QEMU's single write has the same window). Only names of more than
//    448 bytes replacing names of more than 448 bytes take that risk.
// 4. Publish the new header; the open image keeps reading through the backing device it was opened with.
public sealed partial class QedImage
{
    /// <summary>
    /// Checks that <see cref="ChangeBackingFileAsync"/> with these arguments would be accepted, writing nothing (for a caller
    /// that must copy data before the header changes and wants to refuse before the first write).
    /// </summary>
    /// <exception cref="QedReadOnlyException">The image is open read-only.</exception>
    /// <exception cref="QedUnsupportedException">Unknown compatible feature bits are set, or the name does not fit in the header area.</exception>
    /// <exception cref="ArgumentException">The name cannot be stored (a NUL byte, 4096 bytes or more).</exception>
    internal void CheckBackingChange(string? backingFile)
    {
        if (IsReadOnly)
        {
            throw new QedReadOnlyException($"'{FileName}' is open read-only: changing the backing file needs write access");
        }
        WithBacking(Header, EncodeName(backingFile), raw: false);
    }

    /// <summary>
    /// Makes the header name <paramref name="backingFile"/> as the backing file (null or empty: no backing file), with
    /// the no-probe bit when <paramref name="backingFormat"/> is <c>raw</c>; QEMU's bytes, crash-safe (see the top of this file).
    /// No data is copied: what the image reads changes unless the new backing file reads the same as the old one.
    /// </summary>
    internal async ValueTask ChangeBackingFileAsync(string? backingFile, string? backingFormat, bool useAsync, CancellationToken cancellationToken)
    {
        CheckBackingChange(backingFile);
        byte[]? name = EncodeName(backingFile);
        bool raw = name is not null && string.Equals(backingFormat, ImageFormats.Raw.Name, StringComparison.Ordinal);
        await _headerState.ReplaceAsync(
            header => WithBacking(header, name, raw),
            async header =>
            {
                await WriteHeaderAndNameAsync(header, name ?? [], useAsync, cancellationToken).ConfigureAwait(false);
                // Under the header gate, once the name is durable: two changes cannot interleave their names.
                BackingFileName = name is null ? null : backingFile;
                BackingFilePath = BackingFileName is null ? null : BackingChain.Resolve(FileName, BackingFileName);
            },
            useAsync, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Steps 2 and 3: the header and the name at offset 64, in as many writes as crash safety needs.</summary>
    private async ValueTask WriteHeaderAndNameAsync(QedHeader header, byte[] name, bool useAsync, CancellationToken cancellationToken)
    {
        byte[] buffer = new byte[HeaderLayout.Size + name.Length];
        header.WriteTo(buffer);
        name.CopyTo(buffer, HeaderLayout.Size);
        if (buffer.Length > HeaderLayout.SectorSize)
        {
            // Step 3: the tail of a long name first, where the old header does not look (unless its name reached there too).
            await _file.WriteAsync(buffer.AsMemory(HeaderLayout.SectorSize), HeaderLayout.SectorSize, useAsync, cancellationToken).ConfigureAwait(false);
            await _file.FlushAsync(useAsync, cancellationToken).ConfigureAwait(false);
            buffer = buffer[..HeaderLayout.SectorSize];
        }
        await _file.WriteAsync(buffer, 0, useAsync, cancellationToken).ConfigureAwait(false);
        await _file.FlushAsync(useAsync, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Step 1 and the new header: QEMU's checks in QEMU's order, then the names QEMU would write but could not read.</summary>
    private static QedHeader WithBacking(QedHeader header, byte[]? name, bool raw)
    {
        // No compatible feature is defined, so every set bit is unknown.
        if (name is not null && header.CompatFeatures != 0)
        {
            throw new QedUnsupportedException(
                $"Operation not supported (unknown compatible features 0x{header.CompatFeatures:x} at offset {HeaderLayout.CompatFeaturesOffset} may keep data after the header)");
        }
        long length = name?.Length ?? 0;
        if (HeaderLayout.Size + length > (long)header.HeaderSize * header.ClusterSize)
        {
            throw new QedUnsupportedException("No space left in the file header");
        }
        if (length > HeaderLayout.MaxBackingNameLength)
        {
            throw new ArgumentException($"The backing file name is {length} bytes long; QEMU reads at most {HeaderLayout.MaxBackingNameLength}", "backingFile");
        }
        var features = header.Features & ~(QedFeatures.BackingFile | QedFeatures.BackingFormatNoProbe);
        if (name is not null)
        {
            features |= QedFeatures.BackingFile | (raw ? QedFeatures.BackingFormatNoProbe : 0);
        }
        return header with
        {
            Features = features,
            BackingFilenameOffset = HeaderLayout.Size,
            BackingFilenameSize = (uint)length,
        };
    }

    /// <summary>The name's bytes as stored (UTF-8, no terminator), or null for no backing file.</summary>
    private static byte[]? EncodeName(string? backingFile)
    {
        if (string.IsNullOrEmpty(backingFile))
        {
            return null;
        }
        if (backingFile.Contains('\0', StringComparison.Ordinal))
        {
            throw new ArgumentException("The backing file name contains a NUL byte, which ends it for QEMU", nameof(backingFile));
        }
        return Encoding.UTF8.GetBytes(backingFile);
    }
}
