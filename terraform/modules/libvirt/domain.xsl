<?xml version="1.0"?>
<!--
  Applied by the libvirt provider to each node's domain XML before it is defined.
  Resin images load only virtio drivers and find their disks by virtio serial
  (services/base/disks.sh), so:
    - the config drive the provider attaches as a CD-ROM becomes a read-only virtio
      disk with serial "cidata";
    - the second virtio disk (the persist volume) gets serial "persist".
  Everything else is copied unchanged.
-->
<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
  <xsl:output method="xml" omit-xml-declaration="yes" indent="yes"/>

  <xsl:template match="@*|node()">
    <xsl:copy>
      <xsl:apply-templates select="@*|node()"/>
    </xsl:copy>
  </xsl:template>

  <xsl:template match="/domain/devices/disk[@device='cdrom']">
    <disk type="{@type}" device="disk">
      <driver name="qemu" type="raw"/>
      <xsl:copy-of select="source"/>
      <target dev="vdz" bus="virtio"/>
      <readonly/>
      <serial>cidata</serial>
    </disk>
  </xsl:template>

  <xsl:template match="/domain/devices/disk[@device='disk'][2]">
    <xsl:copy>
      <xsl:apply-templates select="@*|node()[not(self::serial)]"/>
      <serial>persist</serial>
    </xsl:copy>
  </xsl:template>
</xsl:stylesheet>
